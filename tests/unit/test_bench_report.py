"""The pure parts of `make bench`: scripts/bench_report.py, imported by path (scripts/ is not a
package)."""

from __future__ import annotations

import json

import pytest

from tests.unit.script_import import load_script

rep = load_script("bench_report")

AB_OUTPUT = """\
This is ApacheBench, Version 2.3 <$Revision: 1903618 $>
Benchmarking 10.77.0.2 (be patient).....done

Server Software:
Server Hostname:        10.77.0.2
Server Port:            80

Document Path:          /small.txt
Document Length:        100 bytes

Concurrency Level:      50
Time taken for tests:   0.634 seconds
Complete requests:      1000
Failed requests:        3
   (Connect: 0, Receive: 0, Length: 3, Exceptions: 0)
Non-2xx responses:      2
Total transferred:      213000 bytes
HTML transferred:       100000 bytes
Requests per second:    1577.62 [#/sec] (mean)
Time per request:       31.693 [ms] (mean)

Percentage of the requests served within a certain time (ms)
  50%     29
  66%     31
  75%     33
  80%     34
  90%     40
  95%     47
  98%     60
  99%     71
 100%   1043 (longest request)
"""

WRK_OUTPUT = """\
Running 2s test @ http://10.78.0.1:8080/small.txt
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.17ms    0.52ms  10.90ms   85.12%
    Req/Sec    23.23k     1.30k   25.10k    80.00%
  46224 requests in 2.00s, 15.34MB read
  Socket errors: connect 0, read 4, write 1, timeout 2
  Non-2xx or 3xx responses: 5
Requests/sec:  23112.41
Transfer/sec:      7.67MB
"""


def test_parse_ab_reads_rate_counts_and_percentiles() -> None:
    assert rep.parse_ab(AB_OUTPUT) == rep.AbResult(
        requests_per_second=1577.62, complete=1000, failed=3, non_2xx=2, p50_ms=29.0,
        p99_ms=71.0)


def test_parse_ab_without_non_2xx_line_counts_zero() -> None:
    text = AB_OUTPUT.replace("Non-2xx responses:      2\n", "")
    assert rep.parse_ab(text).non_2xx == 0


def test_parse_ab_rejects_output_without_percentiles() -> None:
    with pytest.raises(ValueError, match="percentile"):
        rep.parse_ab(AB_OUTPUT.split("Percentage")[0])


def test_parse_wrk_adds_socket_errors_and_bad_responses() -> None:
    assert rep.parse_wrk(WRK_OUTPUT) == rep.WrkResult(23112.41, 46224, 12)


def test_parse_wrk_without_errors() -> None:
    clean = "\n".join(line for line in WRK_OUTPUT.splitlines()
                      if "errors" not in line and "Non-2xx" not in line)
    assert rep.parse_wrk(clean) == rep.WrkResult(23112.41, 46224, 0)


def test_parse_wrk_rejects_a_failed_run() -> None:
    with pytest.raises(ValueError, match="Requests/sec"):
        rep.parse_wrk("unable to connect to 10.77.0.2:80 Connection refused\n")


def test_parse_tx_dropped_of_ip_json() -> None:
    link = [{"ifname": "tcps0", "stats64": {"rx": {"dropped": 1}, "tx": {"dropped": 1404}}}]
    assert rep.parse_tx_dropped(json.dumps(link)) == 1404


def test_parse_tx_dropped_needs_exactly_one_interface() -> None:
    with pytest.raises(ValueError, match="one interface"):
        rep.parse_tx_dropped("[]")


def test_parse_counters_adds_up_every_process() -> None:
    log = ("tcpstack: listening on 10.77.0.2:80\n"
           "tcpstack: counters: rto_timeouts=2 segs_out=10\n"
           "tcpstack: counters: rto_timeouts=1 retrans_segs=4\n")
    assert rep.parse_counters(log) == {"rto_timeouts": 3, "segs_out": 10, "retrans_segs": 4}


def test_median_and_nearest_rank_percentiles() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert rep.median(values) == 3.0
    assert rep.median([1.0, 2.0, 4.0, 10.0]) == 3.0
    assert rep.percentile(values, 50) == 3.0
    assert rep.percentile(values, 99) == 5.0
    assert rep.percentile(values, 20) == 1.0
    assert rep.percentile(values, 21) == 2.0
    assert rep.percentile(list(range(1, 101)), 99) == 99.0


@pytest.mark.parametrize("bad", [0, 101, -1])
def test_percentile_out_of_range(bad: float) -> None:
    with pytest.raises(ValueError):
        rep.percentile([1.0], bad)


def test_median_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        rep.median([])


@pytest.mark.parametrize(("value", "text"), [
    (0.0, "0"), (17.0, "17"), (12345.0, "12,345"), (1577.62, "1,578"), (68.34, "68.3"),
    (2.345, "2.35"), (0.4771, "0.477"),
])
def test_format_number(value: float, text: str) -> None:
    assert rep.format_number(value) == text


def test_sizes() -> None:
    assert rep.parse_size("400M") == 400 << 20
    assert rep.parse_size("1GiB") == 1 << 30
    assert rep.parse_size("65536") == 65536
    assert rep.format_size(20 << 20) == "20 MiB"
    assert rep.format_size(1000) == "1000 bytes"
    with pytest.raises(ValueError):
        rep.parse_size("lots")


def _rows() -> list[object]:
    ab = rep.Row("ab", "new connections/s", "req/s")
    for value in (1000.0, 3000.0, 2000.0):
        ab.add("t1", value)
    for value in (4000.0, 5000.0):
        ab.add("kernel", value)
    ab.note("kernel", "failed")
    ab.note("t2", "n/a (no --workers)")
    ab.add("nginx", 10000.0)
    drops = rep.Row("drop", "TUN drops | towards the stack", "packets")
    drops.add("t1", 7.0)
    return [ab, drops]


COLUMNS = [("t1", "tcpstack, 1 worker"), ("t2", "tcpstack, 2 workers"),
           ("kernel", "kernel"), ("nginx", "nginx")]


def test_render_table_gives_medians_notes_and_ratios() -> None:
    ratios = [rep.Ratio("t1/k", "t1", "kernel"), rep.Ratio("t2/k", "t2", "kernel")]
    assert rep.render_table(_rows(), COLUMNS, ratios).splitlines() == [
        "| measurement | unit | tcpstack, 1 worker | tcpstack, 2 workers | kernel | nginx "
        "| t1/k | t2/k |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        "| new connections/s | req/s | 2,000 | n/a (no --workers) | 4,500 (1 failed) | 10,000 "
        "| 0.44 | — |",
        "| TUN drops \\| towards the stack | packets | 7 | — | — | — | — | — |",
    ]


def test_render_runs_lists_every_sample() -> None:
    assert rep.render_runs(_rows(), COLUMNS).splitlines() == [
        "- new connections/s (req/s): tcpstack, 1 worker 1,000, 3,000, 2,000; "
        "kernel 4,000, 5,000; nginx 10,000",
        "- TUN drops | towards the stack (packets): tcpstack, 1 worker 7",
    ]


def test_replace_section_keeps_everything_outside_the_markers() -> None:
    doc = f"# Performance\n\nintro\n\n{rep.BEGIN}\nold table\n{rep.END}\n\n## Loss\nkept\n"
    assert rep.replace_section(doc, "new table\n") == (
        f"# Performance\n\nintro\n\n{rep.BEGIN}\nnew table\n{rep.END}\n\n## Loss\nkept\n")


def test_replace_section_twice_is_the_same_as_once() -> None:
    doc = "# Performance\n\n## Before and after\nhand-written\n"
    once = rep.replace_section(doc, "table A")
    assert once == f"# Performance\n\n{rep.BEGIN}\ntable A\n{rep.END}\n\n## Before and after\n" \
                   "hand-written\n"
    assert rep.replace_section(rep.replace_section(once, "table B"), "table A") == once


def test_replace_section_of_an_empty_or_untitled_file() -> None:
    assert rep.replace_section("", "t") == f"# Performance\n\n{rep.BEGIN}\nt\n{rep.END}\n"
    assert rep.replace_section("notes\n", "t") == f"{rep.BEGIN}\nt\n{rep.END}\n\nnotes\n"


def test_replace_section_refuses_an_unclosed_section() -> None:
    with pytest.raises(ValueError, match="bench:end"):
        rep.replace_section(f"# P\n{rep.BEGIN}\nold\n", "new")
