"""The seccomp filter of sandboxed commands: the system calls a build never needs fail.

A classic-BPF program, built here (no libseccomp), that bubblewrap loads right before it
starts the command (``--seccomp FD``). It answers EPERM to what only administrators,
debuggers or container managers use: mounting, new namespaces (user namespaces above all,
which would hand the command a root of its own), ptrace and reading other processes'
memory, kernel modules, kexec, BPF, the kernel keyring, perf, swap, reboot, quotas, the
clock, io_uring, and terminal input injection. The list follows what Docker's and
Flatpak's default profiles refuse to unprivileged containers. ``clone3`` answers ENOSYS:
its flags are in memory a filter cannot read, and on ENOSYS the C library falls back to
``clone``, whose flags the filter checks.

x86_64 and aarch64 are known; a system call of any other architecture (32-bit programs,
the x32 ABI) kills the process, since this filter cannot tell what it would do.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum

# Refused with EPERM on every architecture that has them.
DENIED = (
    "acct",
    "add_key",
    "bpf",
    "chroot",
    "clock_adjtime",
    "clock_settime",
    "delete_module",
    "fanotify_init",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pidfd_getfd",
    "pivot_root",
    "process_madvise",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "syslog",
    "umount2",
    "uselib",
    "userfaultfd",
    "vhangup",
)

# The namespace flags of clone(2) and unshare(2). CLONE_NEWTIME (0x80) overlaps clone's
# exit-signal byte, so only unshare is checked for it.
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080
CLONE_NAMESPACES = (
    CLONE_NEWNS
    | CLONE_NEWCGROUP
    | CLONE_NEWUTS
    | CLONE_NEWIPC
    | CLONE_NEWUSER
    | CLONE_NEWPID
    | CLONE_NEWNET
)
UNSHARE_NAMESPACES = CLONE_NAMESPACES | CLONE_NEWTIME
# ioctls that push input into a terminal (CVE-2017-5226 and kin); the same on both.
TIOCSTI = 0x5412
TIOCLINUX = 0x541C


class Arch(IntEnum):
    """``AUDIT_ARCH_*``: which system call table a call was made through."""

    X86_64 = 0xC000003E
    AARCH64 = 0xC00000B7


# Syscall numbers (from the kernel's uapi headers); absent names do not exist there.
_X86_64 = {
    "acct": 163, "add_key": 248, "bpf": 321, "chroot": 161, "clock_adjtime": 305,
    "clock_settime": 227, "clone": 56, "clone3": 435, "delete_module": 176,
    "fanotify_init": 300, "finit_module": 313, "fsconfig": 431, "fsmount": 432,
    "fsopen": 430, "fspick": 433, "init_module": 175, "io_uring_enter": 426,
    "io_uring_register": 427, "io_uring_setup": 425, "ioctl": 16, "ioperm": 173,
    "iopl": 172, "kcmp": 312, "kexec_file_load": 320, "kexec_load": 246, "keyctl": 250,
    "lookup_dcookie": 212, "mount": 165, "mount_setattr": 442, "move_mount": 429,
    "open_by_handle_at": 304, "open_tree": 428, "perf_event_open": 298,
    "pidfd_getfd": 438, "pivot_root": 155, "process_madvise": 440,
    "process_vm_readv": 310, "process_vm_writev": 311, "ptrace": 101, "quotactl": 179,
    "quotactl_fd": 443, "reboot": 169, "request_key": 249, "setns": 308,
    "settimeofday": 164, "swapoff": 168, "swapon": 167, "syslog": 103, "umount2": 166,
    "unshare": 272, "uselib": 134, "userfaultfd": 323, "vhangup": 153,
}  # fmt: skip
_AARCH64 = {
    "acct": 89, "add_key": 217, "bpf": 280, "chroot": 51, "clock_adjtime": 266,
    "clock_settime": 112, "clone": 220, "clone3": 435, "delete_module": 106,
    "fanotify_init": 262, "finit_module": 273, "fsconfig": 431, "fsmount": 432,
    "fsopen": 430, "fspick": 433, "init_module": 105, "io_uring_enter": 426,
    "io_uring_register": 427, "io_uring_setup": 425, "ioctl": 29, "kcmp": 272,
    "kexec_file_load": 294, "kexec_load": 104, "keyctl": 219, "lookup_dcookie": 18,
    "mount": 40, "mount_setattr": 442, "move_mount": 429, "open_by_handle_at": 265,
    "open_tree": 428, "perf_event_open": 241, "pidfd_getfd": 438, "pivot_root": 41,
    "process_madvise": 440, "process_vm_readv": 270, "process_vm_writev": 271,
    "ptrace": 117, "quotactl": 60, "quotactl_fd": 443, "reboot": 142,
    "request_key": 218, "setns": 268, "settimeofday": 170, "swapoff": 225,
    "swapon": 224, "syslog": 116, "umount2": 39, "unshare": 97, "userfaultfd": 282,
    "vhangup": 58,
}  # fmt: skip
SYSCALLS: Mapping[Arch, Mapping[str, int]] = {Arch.X86_64: _X86_64, Arch.AARCH64: _AARCH64}
# On x86_64 this bit selects the x32 ABI, whose calls also report AUDIT_ARCH_X86_64.
X32_SYSCALL_BIT = 0x40000000

# struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6]. Both
# architectures are little-endian, so an argument's low 32 bits are at its offset.
NR_OFFSET = 0
ARCH_OFFSET = 4
ARGS_OFFSET = 16

# Classic BPF opcodes.
LD_W_ABS = 0x20
JEQ_K = 0x15
JGE_K = 0x35
JSET_K = 0x45
RET_K = 0x06
MAX_JUMP = 255

SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000

ALLOW = "allow"
EPERM = "eperm"
ENOSYS = "enosys"
KILL = "kill"


@dataclass(frozen=True)
class _Op:
    code: int
    k: int
    # Labels a conditional jump goes to; None falls through to the next instruction.
    then: str | None = None
    otherwise: str | None = None


@dataclass(frozen=True)
class _Label:
    name: str


def program() -> bytes:
    """The filter as bubblewrap reads it: an array of ``struct sock_filter``."""
    ops: list[_Op | _Label] = [_load(ARCH_OFFSET)]
    for arch in Arch:
        ops.append(_Op(JEQ_K, arch, then=arch.name))
    ops.append(_Op(RET_K, SECCOMP_RET_KILL_PROCESS))
    for arch in Arch:
        ops += _arch_rules(arch)
    ops += [
        _Label(ALLOW),
        _Op(RET_K, SECCOMP_RET_ALLOW),
        _Label(EPERM),
        _Op(RET_K, SECCOMP_RET_ERRNO | errno.EPERM),
        _Label(ENOSYS),
        _Op(RET_K, SECCOMP_RET_ERRNO | errno.ENOSYS),
        _Label(KILL),
        _Op(RET_K, SECCOMP_RET_KILL_PROCESS),
    ]
    return _assemble(ops)


def _arch_rules(arch: Arch) -> list[_Op | _Label]:
    numbers = SYSCALLS[arch]
    prefix = arch.name
    ops: list[_Op | _Label] = [_Label(prefix), _load(NR_OFFSET)]
    if arch is Arch.X86_64:
        ops.append(_Op(JGE_K, X32_SYSCALL_BIT, then=KILL))
    ops += [_Op(JEQ_K, numbers[name], then=EPERM) for name in DENIED if name in numbers]
    clone, unshare, ioctl = (f"{prefix}.{name}" for name in ("clone", "unshare", "ioctl"))
    ops += [
        _Op(JEQ_K, numbers["clone"], then=clone),
        _Op(JEQ_K, numbers["unshare"], then=unshare),
        _Op(JEQ_K, numbers["clone3"], then=ENOSYS),
        _Op(JEQ_K, numbers["ioctl"], then=ioctl),
        _jump(ALLOW),
        # clone(flags, ...) and unshare(flags): the flags are the first argument.
        _Label(clone),
        _load(ARGS_OFFSET),
        _Op(JSET_K, CLONE_NAMESPACES, then=EPERM, otherwise=ALLOW),
        _Label(unshare),
        _load(ARGS_OFFSET),
        _Op(JSET_K, UNSHARE_NAMESPACES, then=EPERM, otherwise=ALLOW),
        # ioctl(fd, request, ...): the kernel reads the request as 32 bits, as does this.
        _Label(ioctl),
        _load(ARGS_OFFSET + 8),
        _Op(JEQ_K, TIOCSTI, then=EPERM),
        _Op(JEQ_K, TIOCLINUX, then=EPERM, otherwise=ALLOW),
    ]
    return ops


def _load(offset: int) -> _Op:
    return _Op(LD_W_ABS, offset)


def _jump(label: str) -> _Op:
    # An always-true comparison: a conditional jump reaches as far as JA here, and keeps
    # the assembler to one kind of jump.
    return _Op(JGE_K, 0, then=label)


def _assemble(ops: list[_Op | _Label]) -> bytes:
    where: dict[str, int] = {}
    instructions: list[_Op] = []
    for op in ops:
        if isinstance(op, _Label):
            where[op.name] = len(instructions)
        else:
            instructions.append(op)
    out = bytearray()
    for index, op in enumerate(instructions):
        out += struct.pack(
            "<HBBI",
            op.code,
            _offset(where, op.then, index),
            _offset(where, op.otherwise, index),
            op.k,
        )
    return bytes(out)


def _offset(where: Mapping[str, int], label: str | None, index: int) -> int:
    if label is None:
        return 0
    distance = where[label] - index - 1
    # Classic BPF jumps only forward, at most 255 instructions.
    if not 0 <= distance <= MAX_JUMP:
        raise ValueError(f"seccomp jump to {label} out of range: {distance}")
    return distance
