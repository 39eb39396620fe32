"""A Jupyter kernel manager whose kernel runs under bubblewrap, as sandbox.py sets it up.

nbgrader's Execute preprocessor passes ``kernel_manager_class=AsyncKernelManager`` to
its own __init__, which beats a config line: to use this class, give it to a subclass of
Execute as that keyword argument. Configure what the kernel may read with
``c.SandboxedKernelManager.read_only`` (e.g. grader/, the course package and its data).

The kernel sees the system read-only, the venv of ``sys.prefix`` (with its base Python),
the ``read_only`` paths and its own connection file read-only, and its working directory
(the notebook's folder, the ``cwd`` the kernel is started with) writable; nothing else.

What differs from a plain kernel, and why:

- Network: the kernel shares the host's network namespace, so students' code can open
  network connections. The manager talks to the kernel over ZMQ on 127.0.0.1 TCP ports,
  which a new network namespace (with its own loopback) would hide.
- Only the connection file is bound, not Jupyter's runtime folder: that folder holds the
  connection files, and so the keys, of other kernels.
- Environment: only the variables that ``env_keep`` matches, plus a PATH with the venv's
  bin first, HOME=/tmp and LANG. Left out are secrets such as NBGRADER_DB_URL and
  JPY_PARENT_PID: inside its PID namespace the kernel's parent is PID 1, which ipykernel
  would take for its parent having died.
- Interrupts go as control messages: a SIGINT to the kernel's process group reaches
  bwrap, which dies of it and takes the kernel along.
- RLIMIT_AS is ``memory_bytes``; no CPU or file-size limits (training uses many threads
  for a long time and may save models).

With CNN_GRADER_NO_SANDBOX=1 it behaves exactly like AsyncKernelManager (after a warning).
"""
from __future__ import annotations

import os
import sys
import typing as t
from collections.abc import Mapping
from fnmatch import fnmatchcase
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from traitlets import Integer, List, Unicode

from cnn_grader.sandbox import (
    DEFAULT_ENV, Limits, bwrap_command, limit_setter, sandbox_disabled, sandbox_problem,
    warn_unsandboxed,
)

ENV_KEEP = [
    "PYTHONPATH", "PYTHONHASHSEED", "MPLBACKEND", "JPY_SESSION_NAME", "CNN_COURSE_*",
    "CNN_GRADER_*", "NBGRADER_EXECUTION", "NBGRADER_VALIDATING", "CUDA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS",
]


class SandboxedKernelManager(AsyncKernelManager):
    """An AsyncKernelManager that starts its kernel under bubblewrap."""

    read_only = List(Unicode(), help="Files and folders the kernel may read, besides the "
                     "system, sys.prefix and its connection file.").tag(config=True)
    memory_bytes = Integer(10 * 2**30, help="The kernel's RLIMIT_AS in bytes (import torch "
                           "needs about 8 GB).").tag(config=True)
    env_keep = List(Unicode(), default_value=ENV_KEEP, help="fnmatch patterns of the "
                    "environment variables that reach the kernel.").tag(config=True)

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: t.Any) -> None:
        """Launch ``kernel_cmd`` under bwrap, in the ``cwd`` it must be given."""
        if sandbox_disabled():
            warn_unsandboxed()
            return await super()._async_launch_kernel(kernel_cmd, **kw)
        problem = sandbox_problem()
        if problem is not None:
            raise RuntimeError(problem)
        if not kw.get("cwd"):
            raise ValueError("SandboxedKernelManager needs the kernel's cwd (the notebook's "
                             "folder): it is the only folder the kernel may write")
        assert self.kernel_spec is not None
        self.kernel_spec.interrupt_mode = "message"  # see the module's docstring
        cwd = Path(kw["cwd"])
        read_only = [Path(sys.prefix), Path(self.connection_file), *map(Path, self.read_only)]
        command = bwrap_command(kernel_cmd, read_only=read_only, writable=[cwd],
                                env=self.kernel_env(kw.get("env") or os.environ), cwd=cwd,
                                network=True)
        limits = Limits(memory_bytes=self.memory_bytes, cpu_seconds=None, file_bytes=None)
        await super()._async_launch_kernel(command, **kw, preexec_fn=limit_setter(limits))

    def kernel_env(self, env: Mapping[str, str]) -> dict[str, str]:
        """The variables of ``env`` that ``env_keep`` matches, after a PATH with the venv's bin."""
        kept = {name: value for name, value in env.items()
                if any(fnmatchcase(name, pattern) for pattern in self.env_keep)}
        return {"PATH": f"{sys.prefix}/bin:{DEFAULT_ENV['PATH']}", **kept}
