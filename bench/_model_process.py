"""The scripted fake model in a process of its own, answering after a latency.

A benchmark of many sessions keeps the model's work (and its share of a GIL) out of the
process that times the server. The base URL is written as the first line on stdout; the
process exits when its stdin reaches EOF (the benchmark ended or died) or on SIGTERM.

With ``--log PATH`` each answer is logged as a line ``TAG TURN UNIX_TIME``: the session's
tag (from its prompt, ``Benchmark session TAG: ...``), the turn (assistant messages so far)
and when the answer was chosen, i.e. ``--latency`` after the request arrived. From these
the benchmark tells the model's time from the platform's, turn by turn (bench/_turns.py).

    python bench/_model_process.py --latency 1.0 [--log PATH]
"""

from __future__ import annotations

import argparse
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _scripted import respond
from openjules.testing import FakeModel, Fault, Reply

STDIN_FD = 0
TAG = re.compile(r"Benchmark session (\S+):")


def logging_responder(path: Path) -> Callable[[dict[str, Any]], Reply | Fault]:
    lock = threading.Lock()
    out = path.open("a", buffering=1)

    def answer(body: dict[str, Any]) -> Reply | Fault:
        step = respond(body)
        messages = body.get("messages", [])
        turn = sum(1 for m in messages if m.get("role") == "assistant")
        tag = next(
            (
                found[1]
                for m in messages
                if m.get("role") == "user" and (found := TAG.search(str(m.get("content"))))
            ),
            "-",
        )
        with lock:
            out.write(f"{tag} {turn} {time.time():.6f}\n")
        return step

    return answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=1.0, help="seconds per answer [1]")
    parser.add_argument("--log", type=Path, default=None, help="log each answer here")
    args = parser.parse_args()
    responder = respond if args.log is None else logging_responder(args.log)
    with FakeModel(responder, latency=args.latency) as model:
        print(model.base_url, flush=True)
        try:
            while os.read(STDIN_FD, 4096):
                pass
        except (OSError, KeyboardInterrupt):
            pass


if __name__ == "__main__":
    main()
