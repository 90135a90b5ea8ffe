"""Build the manual offline: every notebook in nbs/ executed (as `nbdev_test` runs it) and rendered to an HTML page in
_docs/ with its outputs (tables, plots) and a doc entry (signature, parameters, docstring; nbdev's `show_doc`) after
each exported definition. Quarto cannot be installed offline here, so execnb executes and nbconvert renders.
A notebook whose cells fail is reported and the build exits 1: `make test` runs this as its notebook tests, so the
notebooks are executed once and the manual comes with them.

    python tools/build_docs.py [--jobs 2] [NOTEBOOK ...]     # make docs
    python tools/build_docs.py --keep-outputs [NOTEBOOK ...]  # make outputs: also store light outputs in nbs/

`--keep-outputs` writes the light outputs of each executed cell (tables, plots, short printouts; no stderr, no widget
state, nothing over the size limits) back into its notebook, as the anchors keep them, so that a reader of `nbs/` on
GitHub or in JupyterLab sees what the code gives without running it. Run `nbdev_clean` after it.
"""
import argparse, ast, html, json, os, re, sys, time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NBS, OUT = REPO/"nbs", REPO/"_docs"
SKIP_FLAGS = {"notest"}   # settings.ini's tst_flags: cells nbdev_test skips are not run here either
SLOWEST = ("04d_serving", "03_pipeline", "04c_service", "02_registry", "01b_loading", "12_dask_executor", "04a_protocol")  # measured (20-40 s each):
# started first, so that the pool does not end with one of them running alone

# What every notebook's process imports (the builder's own libraries, MLflow, scikit-learn, pandas): each notebook still
# gets a fresh process with a fresh namespace, forked from a server that imported these once (~3 s of CPU each)
PRELOAD = ["__main__", "nbformat", "nbconvert", "execnb.shell", "nbdev.process", "nbdev.frontmatter", "nbdev.showdoc",
           "fastcore.test", "mlops_nb", "pandas", "sklearn", "mlflow", "skops.io", "scipy.stats", "matplotlib"]

MAX_TEXT, MAX_IMAGE = 10_000, 200_000   # characters of one kept output: a table or printout, a plot (base64 PNG)
WIDGET = "application/vnd.jupyter.widget-view+json"   # its state is not stored, so it would render as nothing

def _size(data)->int: return sum(len("".join(v) if isinstance(v, list) else str(v)) for v in data.values())

def light_outputs(outputs:list)->list:
    "The outputs worth storing in a notebook: results, displays and stdout under the size limits; no stderr or errors."
    kept = []
    for o in outputs:
        o = dict(o)
        if o["output_type"] == "stream":
            if o["name"] == "stdout" and len("".join(o["text"])) <= MAX_TEXT: kept.append(o)
        elif o["output_type"] in ("execute_result", "display_data"):
            data = {k: v for k, v in o["data"].items() if k != WIDGET}
            limit = MAX_IMAGE if any(k.startswith("image/") for k in data) else MAX_TEXT
            if data and _size(data) <= limit: kept.append(o | {"data": data})
    return kept

def store_outputs(path:Path, executed)->int:
    "Write the light outputs of the executed cells into the notebook file at `path`; returns how many cells have some."
    nb = json.loads(path.read_text())
    outputs = {c.get("id"): light_outputs(c.get("outputs", [])) for c in executed.cells
               if c.cell_type == "code" and not {"hide", "export", "exports"} & _directives(c).keys()}   # what the reader sees
    for cell in nb["cells"]:
        if cell["cell_type"] == "code": cell["outputs"] = outputs.get(cell.get("id"), [])
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return sum(bool(c.get("outputs")) for c in nb["cells"])

def _directives(cell)->dict:
    return getattr(cell, "directives_", None) or {}

def _public_names(source:str, namespace:dict)->list:
    "The public objects an export cell defines: functions, classes and `@patch` methods, in order."
    objs = []
    for node in ast.parse(source).body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or node.name.startswith("_"): continue
        patched = any(isinstance(d, ast.Name) and d.id == "patch" for d in getattr(node, "decorator_list", []))
        owner = node.args.args[0].annotation if patched and node.args.args else None
        if patched and isinstance(owner, ast.Name) and owner.id in namespace: objs.append(getattr(namespace[owner.id], node.name))
        elif not patched and node.name in namespace: objs.append(namespace[node.name])
    return objs

def _doc_entry(obj)->str:
    "nbdev's doc entry for `obj`, without its quarto-only source link."
    from nbdev.showdoc import show_doc
    text = show_doc(obj)._repr_markdown_()
    return "\n".join(line for line in text.splitlines() if not line.startswith("[source]("))

def _shown_source(source:str)->str:
    return "\n".join(line for line in source.splitlines() if not re.match(r"\s*#\s*\|", line)).strip("\n")

def build(path:Path, keep_outputs:bool=False)->tuple[str, str, float, str|None]:
    "Execute one notebook and write its page (and, with `keep_outputs`, its light outputs): (page name, title, seconds, error or None)."
    import nbformat
    from nbformat.v4.rwbase import rejoin_lines
    from execnb.shell import CaptureShell
    from fastcore.xtras import working_directory
    from nbdev.frontmatter import FrontmatterProc
    from nbdev.process import NBProcessor
    start = time.time()
    os.environ["IN_TEST"] = "1"
    nb = NBProcessor(path, procs=FrontmatterProc, process=True).nb
    skip = lambda c: (c.cell_type != "code" or "nbdev_export(" in c.source or bool(SKIP_FLAGS & _directives(c).keys())
                      or _directives(c).get("eval:", [""])[0].lower() == "false")   # what nbdev_test skips
    shell = CaptureShell(path)
    error = None
    try:
        with working_directory(path.parent): shell.run_all(nb, exc_stop=True, preproc=skip)
    except Exception: error = shell.prettytb(fname=path)
    if keep_outputs and error is None: store_outputs(path, nb)
    title = getattr(nb, "frontmatter_", {}).get("title") or path.stem
    cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\n{getattr(nb, 'frontmatter_', {}).get('description', '')}")]
    for cell in nb.cells:
        d = _directives(cell)
        if cell.cell_type == "raw": continue   # the front matter, shown as the title above
        if cell.cell_type == "markdown":
            cells.append(nbformat.v4.new_markdown_cell(cell.source))
            continue
        if "hide" in d or not _shown_source(cell.source): continue
        code = nbformat.v4.new_code_cell(_shown_source(cell.source))
        code.outputs = [nbformat.from_dict(o) for o in cell.get("outputs", [])]
        cells.append(code)
        if error is None and ("export" in d or "exports" in d):
            cells += [nbformat.v4.new_markdown_cell(_doc_entry(o)) for o in _public_names(cell.source, shell.user_ns)]
    page = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    rejoin_lines(page)   # execnb keeps multi-line outputs as lists of lines, as notebook files store them
    from nbconvert import HTMLExporter
    body, _ = HTMLExporter(template_name="lab", exclude_input_prompt=True, exclude_output_prompt=True).from_notebook_node(page, resources={"metadata": {"name": title}})
    (OUT/f"{path.stem}.html").write_text(body)
    return f"{path.stem}.html", title, time.time() - start, error

def index(pages:list)->str:
    items = "\n".join(f'<li><a href="{html.escape(name)}">{html.escape(title)}</a></li>' for name, title in pages)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>mlops_nb manual</title></head>"
            f"<body style='font-family:sans-serif;max-width:50em;margin:2em auto'><h1>mlops_nb manual</h1>"
            f"<p>Every page is a notebook of <code>nbs/</code>, executed when the manual was built.</p><ul>{items}</ul></body></html>")

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", help="notebooks to build (default: every nbs/*.ipynb)")
    ap.add_argument("--jobs", type=int, default=2, help="notebooks built at once")
    ap.add_argument("--keep-outputs", action="store_true", help="also store each notebook's light outputs in its file (then run nbdev_clean)")
    args = ap.parse_args()
    paths = [Path(p).resolve() for p in args.notebooks] or sorted(NBS.glob("*.ipynb"))
    paths.sort(key=lambda p: SLOWEST.index(p.stem) if p.stem in SLOWEST else len(SLOWEST))   # stable: the rest by name
    missing = [str(p) for p in paths if not p.is_file()]
    if missing: sys.exit(f"no such notebook: {', '.join(missing)}")
    OUT.mkdir(exist_ok=True)
    results = []
    import multiprocessing
    forks = multiprocessing.get_context("forkserver")
    forks.set_forkserver_preload(PRELOAD)   # imported once by the fork server, not once per notebook
    with ProcessPoolExecutor(args.jobs, mp_context=forks, max_tasks_per_child=1) as pool:   # a fresh process per notebook, as nbdev_test
        for done in as_completed([pool.submit(build, p, args.keep_outputs) for p in paths]):
            name, title, seconds, error = done.result()
            results.append(done.result())
            print(f"{len(results):2}/{len(paths)} {'FAILED' if error else 'ok':6} {seconds:6.1f}s  _docs/{name}  {title}", flush=True)
            if error: print(error, file=sys.stderr)
    listed = OUT/"pages.json"   # every page built so far, so building a few notebooks keeps the others in the index
    pages = json.loads(listed.read_text()) if listed.is_file() else {}
    pages |= {n: t for n, t, _, e in results if not e}
    pages = {n: t for n, t in pages.items() if (OUT/n).is_file()}
    listed.write_text(json.dumps(pages, indent=1))
    (OUT/"manual.html").write_text(index(sorted(pages.items(), key=lambda p: (p[0] != "index.html", p[0]))))
    ok = sum(not e for *_, e in results)
    print(f"{ok} of {len(results)} pages built in {OUT}; open {OUT/'manual.html'}")
    if ok < len(results): sys.exit(1)

if __name__ == "__main__":
    main()
