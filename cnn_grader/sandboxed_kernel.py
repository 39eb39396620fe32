"""A Jupyter kernel manager whose kernel runs under bubblewrap, as sandbox.py sets it up.

nbgrader's Execute preprocessor passes ``kernel_manager_class=AsyncKernelManager`` to
its own __init__, which beats a config line: to use this class, give it to a subclass of
Execute as that keyword argument. Configure what the kernel may read with
``c.SandboxedKernelManager.read_only`` (e.g. the course package and its data).

The kernel sees the system read-only, the venv of ``sys.prefix`` (with its base Python),
the ``read_only`` paths and its own connection file read-only, and nothing else of the
host. What it may write, and what it may reach:

- Its working directory (the notebook's folder, the ``cwd`` it is started with) is a
  scratch copy: a tmpfs of ``scratch_bytes`` at the same path, filled with a copy of the
  folder when the sandbox starts (links stay links, pointing inside the sandbox). What the
  kernel writes there is thrown away with the sandbox; the course folder is never written.
  /tmp is a tmpfs of its own (``sandbox.Limits.tmp_bytes``) and every file it writes is
  at most ``file_bytes``.
- No network: the kernel has a network namespace of its own. The manager talks to it
  over ZMQ's IPC transport, Unix sockets in a private folder made for this kernel and
  bound into the sandbox; nothing else is bound writable.
- Only the connection file is bound, not Jupyter's runtime folder: that folder holds the
  connection files, and so the keys, of other kernels.
- Environment: only the variables named in ``env_keep`` (profile, data folder, threads,
  locale and nbgrader's flags), plus a PATH with the venv's bin first and HOME=/tmp. No
  secret reaches it: not NBGRADER_DB_URL, not the training tasks' key or socket, and not
  JPY_PARENT_PID (inside its PID namespace the kernel's parent is PID 1, which ipykernel
  would take for its parent having died).
- Interrupts go as control messages: a SIGINT to the kernel's process group reaches
  bwrap, which dies of it and takes the kernel along.
- RLIMIT_AS is ``memory_bytes``; no CPU limit (training uses many threads for long). At
  most ``processes`` tasks (processes and threads) at once, in a pids cgroup of the
  kernel's own and under RLIMIT_NPROC inside the sandbox (task_limit.py); the group goes,
  with whatever is left in it, when the kernel's resources are cleaned up.

With CNN_GRADER_NO_SANDBOX=1 it behaves exactly like AsyncKernelManager (after a warning).
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import typing as t
from collections.abc import Mapping
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from traitlets import Integer, List, Unicode

from cnn_grader import task_limit
from cnn_grader.sandbox import (
    DEFAULT_ENV, HANDED_IN, Limits, bwrap_command, in_scratch_copy, limit_setter,
    sandbox_disabled, sandbox_problem, warn_unsandboxed,
)

ENV_KEEP = [
    "CNN_COURSE_PROFILE", "CNN_COURSE_DATA", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES", "LANG", "LC_ALL", "PYTHONHASHSEED", "MPLBACKEND",
    "NBGRADER_EXECUTION", "NBGRADER_VALIDATING", "JPY_SESSION_NAME",
]


class SandboxedKernelManager(AsyncKernelManager):
    """An AsyncKernelManager that starts its kernel under bubblewrap."""

    read_only = List(Unicode(), help="Files and folders the kernel may read, besides the "
                     "system, sys.prefix and its connection file.").tag(config=True)
    memory_bytes = Integer(10 * 2**30, help="The kernel's RLIMIT_AS in bytes (import torch "
                           "needs about 8 GB).").tag(config=True)
    scratch_bytes = Integer(Limits.scratch_bytes, help="The size of the kernel's working "
                            "directory, a tmpfs thrown away afterwards.").tag(config=True)
    file_bytes = Integer(2**30, help="The largest file the kernel may write "
                         "(RLIMIT_FSIZE).").tag(config=True)
    processes = Integer(Limits.processes, help="The most tasks (processes and threads) "
                        "the kernel may run at once.").tag(config=True)
    env_keep = List(Unicode(), default_value=ENV_KEEP, help="The names of the environment "
                    "variables that reach the kernel.").tag(config=True)

    _ipc_folder: str | None = None
    _task_group: task_limit.TaskGroup | None = None

    async def _async_pre_start_kernel(self, **kw: t.Any) -> tuple[list[str], dict[str, t.Any]]:
        """Before the connection file is written: IPC sockets in a folder of this kernel's."""
        if not sandbox_disabled():
            if self._ipc_folder is None:
                self._ipc_folder = tempfile.mkdtemp(prefix="cnn-kernel-")
            self.transport = "ipc"
            self.ip = os.path.join(self._ipc_folder, "kernel")
        return await super()._async_pre_start_kernel(**kw)

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
                             "folder): the kernel works in a scratch copy of it")
        assert self.kernel_spec is not None and self._ipc_folder is not None
        self.kernel_spec.interrupt_mode = "message"  # see the module's docstring
        cwd = Path(kw["cwd"])
        read_only = [Path(sys.prefix), Path(self.connection_file), *map(Path, self.read_only)]
        limits = Limits(memory_bytes=self.memory_bytes, cpu_seconds=None,
                        file_bytes=self.file_bytes, processes=self.processes)
        command = bwrap_command(in_scratch_copy(kernel_cmd), read_only=read_only,
                                writable=[Path(self._ipc_folder)],
                                env=self.kernel_env(kw.get("env") or os.environ), cwd=cwd,
                                mounts={HANDED_IN: cwd},
                                scratch={cwd: self.scratch_bytes}, tmp_bytes=limits.tmp_bytes,
                                processes=self.processes)
        if self._task_group is None:
            self._task_group = task_limit.task_group(self.processes)
        await super()._async_launch_kernel(command, **kw,
                                           preexec_fn=limit_setter(limits, self._task_group))

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart and self._ipc_folder is not None:
            shutil.rmtree(self._ipc_folder, ignore_errors=True)
            self._ipc_folder = None
        if not restart and self._task_group is not None:
            self._task_group.remove()
            self._task_group = None

    def kernel_env(self, env: Mapping[str, str]) -> dict[str, str]:
        """The variables of ``env`` named in ``env_keep``, after a PATH with the venv's bin."""
        kept = {name: env[name] for name in self.env_keep if name in env}
        return {"PATH": f"{sys.prefix}/bin:{DEFAULT_ENV['PATH']}", **kept}
