"""Throughput under concurrent requests: every client's requests counted, settings recorded; never timing assertions."""

import threading

import pytest

from tftrt_toolkit.errors import ConfigError
from tftrt_toolkit.runtime.session import ModelRunner
from tftrt_toolkit.runtime.throughput import CSV_COLUMNS, measure_throughput, run_clients
from tftrt_toolkit.runtime.timing import MIN_ROUNDS


class CountingRunner(ModelRunner):
    """A real runner that records which threads called it and how many calls overlapped at most.

    Two clients (threads tftrt-client-1 and -2, which exist only with 3+ clients) meet inside
    the model once before running it: if clients really run concurrently they overlap there
    by construction, not by the luck of the scheduler; if calls were serialized, the meeting
    times out and ``most_at_once`` stays 1.
    """

    MEETING = ("tftrt-client-1", "tftrt-client-2")

    def __init__(self, model):
        super().__init__(model)
        self.lock = threading.Lock()
        self.threads, self.active, self.most_at_once, self.calls = set(), 0, 0, 0
        self.meeting = threading.Barrier(len(self.MEETING), timeout=60)
        self.met = False

    def run_prepared(self, tensors):
        with self.lock:
            self.threads.add(threading.get_ident())
            self.active += 1
            self.calls += 1
            self.most_at_once = max(self.most_at_once, self.active)
        try:
            if threading.current_thread().name in self.MEETING and not self.met:
                try:
                    self.meeting.wait()
                    self.met = True
                except threading.BrokenBarrierError:
                    self.met = True  # serialized clients: the assertion on most_at_once says so
            return super().run_prepared(tensors)
        finally:
            with self.lock:
                self.active -= 1


@pytest.fixture(scope="module")
def measured(tiny_fp32_conversion):
    runner = CountingRunner(tiny_fp32_conversion).load()
    report = measure_throughput(runner, concurrency=(1, 3), batch_sizes=(1, 2), duration=0.3, warmup=1)
    yield report, runner
    runner.close()


def test_one_result_per_batch_size_and_concurrency(measured):
    report, _ = measured
    assert [(r.batch_size, r.concurrency) for r in report.results] == [(1, 1), (1, 3), (2, 1), (2, 3)]
    for r in report.results:
        assert r.requests >= MIN_ROUNDS * r.concurrency  # every client times at least MIN_ROUNDS requests
        assert r.requests_per_second == pytest.approx(r.requests / r.duration_s, rel=1e-3)
        assert r.samples_per_second == pytest.approx(r.requests_per_second * r.batch_size, rel=1e-3)
        lat = r.latency_ms
        assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]


def test_clients_are_concurrent_threads_on_one_model(measured):
    report, runner = measured
    assert len(runner.threads) >= 3  # each client is its own thread
    assert runner.most_at_once >= 2  # two clients were inside the model at once (their meeting)
    timed = sum(r.requests for r in report.results)
    assert runner.calls >= timed  # plus the untimed warm-up calls


def test_settings_say_how_it_was_measured(measured):
    report, _ = measured
    settings = report.settings
    assert settings["concurrency"] == [1, 3] and settings["batch_sizes"] == [1, 2]
    assert "threads in one process" in settings["clients"]
    assert set(settings["threads"]["in_force"]) == {"intra_op_threads", "inter_op_threads"}
    assert settings["cpu_model"] is not None and settings["duration_s"] == 0.3
    rows = report.csv_rows()
    assert len(rows) == 4 and set(rows[0]) == set(CSV_COLUMNS)
    assert report.to_json()["results"][1]["concurrency"] == 3


def test_a_failing_client_raises_in_the_caller():
    def broken():
        raise RuntimeError("model went away")

    with pytest.raises(RuntimeError, match="model went away"):
        run_clients([lambda: None, broken], duration=0.05, warmup=0)


@pytest.mark.parametrize("concurrency, fragment", [((), "empty"), ((0,), "not valid"), ((2, 2), "repeats"), ((1.5,), "not valid")])
def test_bad_concurrency_is_refused(tiny_fp32_conversion, concurrency, fragment):
    with pytest.raises(ConfigError, match=fragment):
        measure_throughput(tiny_fp32_conversion, concurrency=concurrency, duration=0.1)


def test_rendering_table_and_chart(measured, tmp_path):
    pytest.importorskip("matplotlib")
    from tftrt_toolkit.report import throughput as rendering

    report, _ = measured
    lines = rendering.table_lines(report)
    assert lines[1].split()[:4] == ["batch", "clients", "requests/s", "samples/s"]
    assert len(lines) == 2 + len(report.results)
    assert rendering.to_markdown(report).count("\n") == 1 + len(report.results)
    path = rendering.plot_throughput(report, str(tmp_path / "throughput.png"))
    with open(path, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def test_the_report_saves_what_the_cli_writes(measured, tmp_path):
    # `tftrt benchmark --concurrency --output=DIR` calls this; the Python API writes the same files.
    pytest.importorskip("matplotlib")
    import csv
    import json

    from tftrt_toolkit.errors import OutputError
    from tftrt_toolkit.report import throughput as rendering

    report, _ = measured
    assert report.table_lines() == rendering.table_lines(report)
    paths = report.save(str(tmp_path / "bench"))
    assert sorted(paths) == ["throughput.csv", "throughput.json", "throughput.png"]
    saved = json.load(open(paths["throughput.json"]))
    assert [(r["batch_size"], r["concurrency"]) for r in saved["results"]] == [(1, 1), (1, 3), (2, 1), (2, 3)]
    with open(paths["throughput.csv"]) as handle:
        assert tuple(csv.DictReader(handle).fieldnames) == CSV_COLUMNS
    assert "| batch | clients |" in report._repr_markdown_()
    with pytest.raises(OutputError, match="already exists"):
        report.save(str(tmp_path / "bench"))
