"""Models: list the catalog with each model's fit here, pull, import, use, show the policy."""

from __future__ import annotations


import sys
import time

from .common import add_common, data_folder, emit


def register(sub) -> None:
    group = sub.add_parser("models", help="the model catalog: list, pull, import, use")
    add_common(group, suppress=True)
    verbs = group.add_subparsers(dest="models_command", required=True, metavar="ACTION")

    def verb(name, run, help, aliases=()):
        p = verbs.add_parser(name, help=help, aliases=list(aliases))
        add_common(p, suppress=True)
        p.set_defaults(run=run)
        return p

    p = verb("list", cmd_list, "every model in the catalog and every imported one, with its fit on this machine")
    p.add_argument("--context", type=int, default=None, help="context size to size the fit for (default: settings)")
    p = verb("pull", cmd_pull, "download a catalog model (resumes an interrupted download)", aliases=("download",))
    p.add_argument("name", help="a name from `models list`")
    p = verb("import", cmd_import, "check a GGUF file and copy it into the models folder")
    p.add_argument("path", help="a .gguf file (from disk, a share or a USB stick)")
    p = verb("use", cmd_use, "answer with this model from now on (the window and the CLI)")
    p.add_argument("model", help="a catalog name, an imported model's name, or a GGUF path")
    p.add_argument("--context", type=int, default=None, help="context size (default: settings)")
    verb("policy", cmd_policy, "the administrator's model policy in effect")


def _store(args):
    from ..models.store import ModelStore

    return ModelStore(data_folder(args))


def _context(args) -> int:
    from ..config import Settings

    return args.context or Settings.load(data_folder(args)).context_size


def cmd_list(args) -> int:
    store = _store(args)
    rows = store.rows(_context(args))
    lines = []
    for row in rows:
        e = row.entry
        size = f"{row.size / 1e9:.2f} GB"
        state = "installed" if row.installed else "—"
        if not row.allowed:
            state += ", not allowed by policy"
        desc = f"{e.parameters} {e.quant}" if e else "imported"
        lines.append(f"{row.name:<20} {desc:<13} {size:>9}  {row.fit.label:<27} {state}")
    emit(args, {"machine": store.machine.to_json(), "policy": store.policy.to_json(),
                "models": [row.to_json() for row in rows]}, "\n".join(lines))
    return 0


class _Bar:
    """Bytes, bytes/s and ETA on stderr: redrawn in place on a terminal, a line per 10% otherwise."""

    def __init__(self, name: str):
        self.name, self.tty, self.step = name, sys.stderr.isatty(), -1

    def __call__(self, p) -> None:
        pct = 100 * p.done / p.total if p.total else 0
        eta = f", {p.eta_s:.0f} s left" if p.eta_s is not None else ""
        text = f"{self.name}: {p.done / 1e6:,.1f} of {p.total / 1e6:,.1f} MB ({pct:.0f}%), {p.bytes_per_s / 1e6:.1f} MB/s{eta}"
        if self.tty:
            sys.stderr.write("\r" + text.ljust(100))
            sys.stderr.flush()
        elif int(pct // 10) != self.step:
            self.step = int(pct // 10)
            print(text, file=sys.stderr)


def cmd_pull(args) -> int:
    store = _store(args)
    start = time.monotonic()
    bar = _Bar(args.name)
    try:
        pulled = store.pull(args.name, on_progress=bar)
    finally:
        if bar.tty:
            sys.stderr.write("\n")
    data = {"name": args.name, "path": str(pulled.path), "size": pulled.size, "sha256": pulled.sha256,
            "revision": pulled.revision, "resumed_from": pulled.resumed_from,
            "seconds": round(time.monotonic() - start, 2)}
    resumed = f", resumed at {pulled.resumed_from / 1e6:.1f} MB" if pulled.resumed_from else ""
    emit(args, data, f"{pulled.path} ({pulled.size / 1e6:.1f} MB, SHA-256 {pulled.sha256} verified{resumed})\n"
                     f"Use it with: enclave-cli models use {args.name}")
    return 0


def cmd_import(args) -> int:
    item = _store(args).import_file(args.path)
    emit(args, item.to_json(), f"imported {item.file} as {item.name!r} (SHA-256 {item.sha256})\n"
                               f"Use it with: enclave-cli models use {item.name}")
    return 0


def cmd_use(args) -> int:
    from ..config import Settings

    data_dir = data_folder(args)
    settings = Settings.load(data_dir)
    store = _store(args)
    n_ctx = args.context or settings.context_size
    path, entry = store.resolve(args.model)
    fit = store.check_usable(path, n_ctx, entry.title if entry else path.name)
    bundled = entry is not None and entry.bundled
    # "" means "the default", which a policy's default_model would replace: name the file then.
    settings.llm_model = "" if bundled and not store.policy.default_model else str(path)
    settings.context_size = n_ctx
    settings.gpu_layers = fit.gpu_layers
    # The refusal cut measured for this model, else the general default (not the last model's).
    measured = entry.refusal_probability if entry is not None else None
    settings.model_refusal_probability = measured if measured is not None else Settings().model_refusal_probability
    settings.save(data_dir)
    emit(args, {"model": str(path), "fit": fit.to_json(), "gpu_layers": fit.gpu_layers, "context": n_ctx},
         f"answering with {path.name}: {fit.label} ({fit.reason})")
    return 0


def cmd_policy(args) -> int:
    policy = _store(args).policy
    human = (f"policy file: {policy.path}\n" + "\n".join(f"{k}: {v}" for k, v in policy.to_json().items() if k != "path")
             if policy.path else "no policy file: every model, downloads and model servers are allowed")
    emit(args, policy.to_json(), human)
    return 0



