"""TensorFlow's C++ log lines kept off the user's terminal, on every processor.

TensorFlow and absl write straight to file descriptor 2 while TensorFlow loads: absl's "All log messages
before absl::InitializeLog() ..." warning, the oneDNN notice (on by default on processors with AVX-512/AMX)
and the CPU feature guard. `TF_CPP_MIN_LOG_LEVEL` is read too late to stop some of them on some processors,
so it cannot be relied on alone. Instead, whichever module imports TensorFlow first (Keras, our model code,
a user's plug-in), the import runs with descriptor 2 captured, and the captured lines are passed on except
TensorFlow's informational ones (all of them with `--quiet`). Python's own writes to stderr (progress bars,
errors) do not pass through here outside that import.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType

# Lines with nothing for a user: glog-style INFO/WARNING lines ("I0000 00:00:1796... port.cc:153] ..."),
# absl's note that it was not initialised, and the CPU feature guard's second line.
NOISE = re.compile(
    r"^(?:[IW]\d{4} [\d:.]+\s+\d+ \S+:\d+\]"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions:)"
)


def keep_line(line: str, quiet: bool) -> bool:
    """Whether a line TensorFlow wrote while loading reaches the user."""
    return not quiet and bool(line.strip()) and not NOISE.match(line)


@contextmanager
def captured_stderr_fd(quiet: bool) -> Iterator[None]:
    """Descriptor 2 goes to a temporary file for the block; then the lines worth keeping are written to
    Python's stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                sink.seek(0)
                lines = sink.read().decode("utf-8", errors="replace").splitlines()
                kept = [line for line in lines if keep_line(line, quiet)]
                if kept:
                    sys.stderr.write("\n".join(kept) + "\n")
    finally:
        os.close(saved)


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader, finder: TensorFlowLogFilter) -> None:
        self.inner = inner
        self.finder = finder

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        if self.finder.quiet is None:
            self.inner.exec_module(module)
            return
        with captured_stderr_fd(self.finder.quiet):
            self.inner.exec_module(module)


class TensorFlowLogFilter(importlib.abc.MetaPathFinder):
    """Wraps the first import of `tensorflow` in `captured_stderr_fd`; does nothing for anything else.
    `quiet` None passes every line on (the user asked for TensorFlow's logs)."""

    def __init__(self) -> None:
        self.quiet: bool | None = False

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: the real finders locate it
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader, self)
        return spec


# A level set before movierec started is the user's own.
_USER_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")


def filter_tensorflow_logs(quiet: bool = False) -> None:
    """Install the filter (once per process) before TensorFlow may load. `quiet` drops every line it
    writes while loading and, through TF_CPP_MIN_LOG_LEVEL and absl, its later log lines too. A user who
    set TF_CPP_MIN_LOG_LEVEL asked for TensorFlow's logs: without `quiet` they get them unfiltered."""
    mode: bool | None = quiet
    if quiet:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        os.environ["GRPC_VERBOSITY"] = "ERROR"
        try:
            from absl import logging as absl_logging  # small; installed with TensorFlow
        except ImportError:
            pass
        else:
            absl_logging.set_verbosity(absl_logging.ERROR)
    elif _USER_LEVEL is not None:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = _USER_LEVEL
        mode = None
    else:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"  # later INFO/WARNING lines: nothing for a user either
    if "tensorflow" in sys.modules:
        return
    finder = next((f for f in sys.meta_path if isinstance(f, TensorFlowLogFilter)), None)
    if finder is None:
        finder = TensorFlowLogFilter()
        sys.meta_path.insert(0, finder)
    finder.quiet = mode
