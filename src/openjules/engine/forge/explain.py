"""Git failures against a remote, in words a person can act on."""

from __future__ import annotations


def explain_git_failure(error: str, *, where: str, github: bool) -> str:
    """A git failure in words a person can act on; ``github``: the remote is the
    configured GitHub, reached with OPENJULES_GITHUB_TOKEN."""
    lowered = error.lower()
    if (
        "authentication failed" in lowered
        or "could not read username" in lowered
        or ("returned error: 401" in lowered)
    ):
        if not github:
            return f"{where} asked for credentials that openjules does not have ({error})."
        return (
            f"{where} refused the credentials. Check that OPENJULES_GITHUB_TOKEN is valid "
            "and may write to the repository."
        )
    if "returned error: 403" in lowered:
        if not github:
            return f"{where} refused access (403)."
        return (
            f"{where} refused access (403). The token needs write access to the "
            "repository's contents (fine-grained: Contents read and write; classic: repo scope)."
        )
    if "returned error: 404" in lowered or "not found" in lowered:
        return f"{where} was not found (404), or the token cannot see it."
    if (
        "failed to connect" in lowered
        or "could not resolve host" in lowered
        or "connection refused" in lowered
        or "timed out" in lowered
    ):
        return f"{where} could not be reached over the network ({error})."
    return error
