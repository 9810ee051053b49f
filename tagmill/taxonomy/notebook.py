"""The analysis notebook (`notebooks/taxonomy.ipynb`, stored without outputs) executed on one run's tables, so
an analyst opens it with every table and plot already there. Needs nbformat, nbclient and ipykernel (the dev
extras `make setup` installs) and a source checkout, where the notebook lives."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "taxonomy.ipynb"


def execute_notebook(outputs: str, run_date: str, dest: Path, source: Path = NOTEBOOK, timeout: int = 300):
    """Run `source` top to bottom on the taxonomy tables of `run_date` under the outputs root `outputs` and
    write the executed copy to `dest`; returns the executed notebook. Raises nbclient's CellExecutionError
    naming the failing cell.

    The kernel is a python3 kernel spec of this very interpreter, written to a temporary folder and the only
    one the kernel manager looks at, so a user's own python3 kernel elsewhere cannot run the notebook with
    another Python (and without tagmill)."""
    import nbclient
    import nbformat
    from ipykernel import kernelspec
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    nb = nbformat.read(source, as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        kernelspec.install(kernel_name="python3", prefix=tmp)
        specs = KernelSpecManager(kernel_dirs=[os.path.join(tmp, "share", "jupyter", "kernels")])
        manager = KernelManager(kernel_name="python3", kernel_spec_manager=specs, transport="ipc",
                                ip=os.path.join(tmp, "kernel"))  # unix sockets: nothing on TCP
        env = {**os.environ, "TAGMILL_OUTPUTS": str(outputs), "TAGMILL_DATE": run_date}
        try:
            nbclient.NotebookClient(nb, km=manager, timeout=timeout, kernel_name="python3",
                                    resources={"metadata": {"path": tmp}}).execute(env=env)
        finally:  # nbclient leaves a kernel it did not start running
            if manager.has_kernel:
                manager.shutdown_kernel(now=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(dest))
    return nb
