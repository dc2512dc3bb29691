"""The files a run writes: OUTPUT.md (the table and its notes), OUTPUT.json (everything), OUTPUT.png (chart.py)."""

from typing import Dict

from tftrt_toolkit.errors import ConfigError
from tftrt_toolkit.report import tables

from .cells import AGREEMENT_FLAG_BELOW, agreement_text, format_ms, model_title, onednn_text, result_at
from .chart import plot_peers
from .rows import ONEDNN_SWITCH


def _own_threads_note(report) -> str:
    """Rows served at the threads their conversion records (token branches): which, and at what threads."""
    own = [(row["label"], row["process"]["tf_threads"]) for row in report["rows"]
           if (row.get("process") or {}).get("tf_threads")]
    return "".join(f" but {label}, which ran as its conversion records it is served: in a worker process at "
                   f"{threads['intra_op_threads']} intra-op and {threads['inter_op_threads']} inter-op threads "
                   "(its branches side by side, the same two cores)" for label, threads in own)


def markdown_table(report: dict) -> str:
    batch_sizes = report["settings"]["batch_sizes"]
    settings = report["settings"]
    header = ["runtime", "stays a TF SavedModel", "top-1 vs plain TF", "TF oneDNN"]
    for b in batch_sizes:
        header += [f"bs{b} median", f"bs{b} speed-up"]
    table = [header]
    skipped = []
    for row in report["rows"]:
        if row["status"] != "measured":
            skipped.append(f"- **{row['label']}** skipped: {row['reason']}")
            continue
        cells = [row["label"] if row["family"] != "tftrt_toolkit" else f"**{row['label']}**",
                 "yes" if row["stays_tf_saved_model"] else "no", agreement_text(row), onednn_text(row)]
        for b in batch_sizes:
            cell = result_at(row, b)
            cells += [format_ms(cell["latency_ms"]["p50"]), f"{cell['speedup_vs_tf']:.2f}×"] if cell else ["–", "–"]
        table.append(cells)
    runs = sorted({cell["runs"] for row in report["rows"] for cell in row.get("results", [])})
    tf_agreement = report["rows"][0].get("agreement", {})
    notes = [
        f"Model {model_title(report)}; {settings['cpu_model']}, {settings['usable_cores']} cores, "
        f"{settings['threads']} intra-op threads for every runtime{_own_threads_note(report)}; "
        f"timing inputs: {settings['data']}.",
        f"Median latency per batch over {runs[0]}{'' if runs[0] == runs[-1] else '–' + str(runs[-1])} timed runs "
        "per runtime and batch size, "
        f"from {settings['rounds']} interleaved rounds (first calls, warm-up and each block's wake-up call "
        f"excluded); speed-up = plain TF median / row median. "
        f"Top-1 vs plain TF on the same {tf_agreement.get('samples', '?')} inputs ({settings['agreement_data']})"
        + (f", where plain TF predicted {tf_agreement['distinct_top1_classes']} distinct "
           f"class{'es' if tf_agreement['distinct_top1_classes'] != 1 else ''}"
           if "distinct_top1_classes" in tf_agreement else "")
        + f" (⚠ below {AGREEMENT_FLAG_BELOW:.0%}); max |difference| of the output per row is in the JSON.",
        "TF oneDNN: whether TF's oneDNN ops were on in the process that ran the row, and who decided "
        f"({ONEDNN_SWITCH} is read once, when TF is imported). Plain TF is the reference as users run it by default"
        + (f"; rows marked 'worker process' ran in a second process started with {ONEDNN_SWITCH}=1, "
           "built and timed there block by block in the same interleaved rounds"
           if "worker process" in settings.get("tf_onednn_by_process", {}) else "")
        + ". ONNX Runtime, OpenVINO and TFLite have their own kernels: the switch does not apply to them (–).",
        *([f"Int8 calibration: {settings['int8_calibration']}, from {settings['int8_calibration_data']}."]
          if settings.get("int8_calibration") else []),
        "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v) + ".",
        f"Regenerate: `{report['command']}`",
    ]
    return ("\n".join([tables.markdown(table)] + ([""] + skipped if skipped else []) + [""] + notes) + "\n"
            + in_flight_table(report))


SETTING_WORDS = {"tf_threads": "TF's threads", "one_thread_per_request": "1 intra-op thread per request",
                 "served": "its serving mode"}


def in_flight_table(report: dict) -> str:
    """``--concurrency``: requests/s at batch 1 with N requests in flight, per row (empty without it)."""
    setup = report["settings"].get("concurrency")
    if not setup:
        return ""
    clients = setup["clients"]
    reference = next((row.get("concurrent", {}).get("requests_per_second", {}).get("tf_threads")
                      for row in report["rows"] if row["key"] == "tf"), None)
    table = [["runtime", "served as", f"requests/s, {clients} in flight", "vs plain TF default"]]
    for row in report["rows"]:
        found = row.get("concurrent")
        if row["status"] != "measured" or not found:
            continue
        rates = found.get("requests_per_second") or {}
        label = row["label"] if row["family"] != "tftrt_toolkit" else f"**{row['label']}**"
        # Plain TF at both threadings; every other row at its best (ours: what tftrt tune would choose).
        shown = [s for s in ("tf_threads", "one_thread_per_request") if s in rates] if row["key"] == "tf" else (
            [found["setting"]] if rates else [])
        for setting in shown:
            mode = found.get("modes", {}).get(setting, "")
            served = SETTING_WORDS.get(setting, setting) if setting != "served" else mode
            if row["key"] != "tf" and len(rates) > 1:  # the better threading; the other one's figure beside it
                served += " (" + ", ".join(f"{SETTING_WORDS[s]}: {r:.1f}" for s, r in rates.items() if s != setting) + ")"
            ratio = f"{rates[setting] / reference:.2f}×" if reference else "–"
            table.append([label, served, f"{rates[setting]:.1f}", ratio])
        if not rates:
            table.append([label, found.get("problem") or found.get("problem_one_thread") or "not measured", "–", "–"])
    settings = report["settings"]
    notes = [f"Batch 1, {clients} requests in flight, {settings['usable_cores']} cores, {settings['threads']} intra-op "
             f"threads for runtimes that share one pool; {setup['how']}. Peers in their serving modes: ONNX Runtime one "
             "session per request thread (1 thread each), OpenVINO PERFORMANCE_HINT=THROUGHPUT with one stream per "
             "request, TFLite one interpreter per request thread (1 thread each). TF SavedModels: TF's threads, or 1 "
             "intra-op thread per request (inter-op = requests in flight) in a subprocess."]
    return ("\n## Throughput: requests in flight\n\n" + tables.markdown(table) + "\n\n" + "\n".join(notes) + "\n")


def write_outputs(report: dict, paths: Dict[str, str], *, overwrite: bool, plot: bool, log) -> dict:
    from tftrt_toolkit.report.writers import write_json, write_text

    title = f"# Peer benchmark: {model_title(report)}\n\n"
    report["outputs"] = {"json": paths["json"], "markdown": paths["md"], "png": None}
    if plot:
        try:
            plot_peers(report, paths["png"], overwrite=overwrite)
            report["outputs"]["png"] = paths["png"]
        except ConfigError as error:  # matplotlib missing: the numbers still get written
            report["outputs"]["png_skipped"] = str(error)
            log(str(error))
    write_text(paths["md"], title + markdown_table(report), overwrite=overwrite)
    write_json(paths["json"], report, overwrite=overwrite)
    log(f"wrote {', '.join(p for p in (paths['json'], paths['md'], report['outputs']['png']) if p)}")
    print(markdown_table(report))
    return report
