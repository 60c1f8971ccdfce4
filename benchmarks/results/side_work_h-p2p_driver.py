import sys, json, os, tempfile, shutil
from pathlib import Path
root_code = sys.argv[1]; run = sys.argv[2]; minutes = float(sys.argv[3])
sys.path.insert(0, root_code); sys.path.insert(0, root_code + "/benchmarks")
import gankit.training.loop as L, gankit.training.sidework as S; L.PLOT_SECONDS = S.PLOT_SECONDS
import side_work as sw, gankit
assert gankit.__file__.startswith(root_code), gankit.__file__
root = Path(tempfile.mkdtemp(prefix="gankit-side-"))
try:
    row = sw.one(run, sw.RUNS[run], minutes, True, root)
finally:
    shutil.rmtree(root, ignore_errors=True)
row["code"] = root_code; row["load"] = os.getloadavg()
print("ROW", json.dumps(row), flush=True)
