"""The analysis notebook (`notebooks/taxonomy.ipynb`, stored without outputs) executed on one run's tables, so
an analyst opens it with every table and plot already there. Needs nbformat, nbclient and ipykernel (the dev
extras `make setup` installs) and a source checkout, where the notebook lives."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "taxonomy.ipynb"


def execute_notebook(outputs: str, run_date: str, dest: Path, source: Path = NOTEBOOK, timeout: int = 300):
    """Run `source` top to bottom on the taxonomy tables of `run_date` under the outputs root `outputs` and
    write the executed copy to `dest`; returns the executed notebook. Raises nbclient's CellExecutionError
    naming the failing cell.

    The kernel is a kernel spec of this very interpreter (sys.executable -m ipykernel_launcher), written to a
    temporary folder that is the only one the kernel manager looks at, so a user's own python3 kernel
    elsewhere cannot run the notebook with another Python (and without tagmill)."""
    import nbclient
    import nbformat
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    nb = nbformat.read(source, as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        spec = os.path.join(tmp, "kernels", "python3")
        os.makedirs(spec)
        with open(os.path.join(spec, "kernel.json"), "w", encoding="utf-8") as f:
            json.dump({"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                       "display_name": "Python 3 (tagmill)", "language": "python"}, f)
        specs = KernelSpecManager(kernel_dirs=[os.path.join(tmp, "kernels")])
        manager = KernelManager(kernel_name="python3", kernel_spec_manager=specs, transport="ipc",
                                ip=os.path.join(tmp, "kernel"))  # unix sockets: nothing on TCP
        env = {**os.environ, "TAGMILL_OUTPUTS": str(outputs), "TAGMILL_DATE": run_date}
        client = nbclient.NotebookClient(nb, km=manager, timeout=timeout, kernel_name="python3",
                                         resources={"metadata": {"path": tmp}})
        try:
            client.execute(env=env)
        finally:  # nbclient leaves the client and the kernel of a manager it did not make running
            if client.kc is not None:
                client.kc.stop_channels()
            if manager.has_kernel:
                manager.shutdown_kernel(now=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(dest))
    return nb
