// Verifies webhook deliveries an openjules server made, with the `standardwebhooks` npm
// package (what the README tells Node users to use). Reads DELIVERIES (a JSON file of
// {headers, body} as the receiver got them) and SECRET; prints one JSON line.
import { readFileSync } from "node:fs";
import { Webhook } from "standardwebhooks";

const deliveries = JSON.parse(readFileSync(process.env.DELIVERIES, "utf8"));
const wh = new Webhook(process.env.SECRET);
const types = [];
for (const { headers, body } of deliveries) {
  const event = wh.verify(body, headers); // throws if the signature does not match
  types.push(event.type);
}
let tamperedRejected = false;
try {
  const { headers, body } = deliveries[0];
  wh.verify(body.replace("}", ' }'), headers);
} catch {
  tamperedRejected = true;
}
let wrongSecretRejected = false;
try {
  const { headers, body } = deliveries[0];
  new Webhook("whsec_" + Buffer.alloc(32, 7).toString("base64")).verify(body, headers);
} catch {
  wrongSecretRejected = true;
}
console.log(JSON.stringify({ verified: types.length, types, tamperedRejected, wrongSecretRejected }));
