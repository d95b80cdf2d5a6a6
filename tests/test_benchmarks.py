"""benchmarks/bench_gpt.py: it runs end to end (tiny model), and what it compares is comparable.

No timing is asserted: the machine may be busy. What is checked is that the benchmark
prints every row, and that ours and Hugging Face's GPT-2 compute the same function when
given the same weights (otherwise the timings would compare different things).
"""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import requires_sandbox

pytest.importorskip("transformers")

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import bench_gpt  # noqa: E402

pytestmark = pytest.mark.slow  # times models against Hugging Face's: make test runs it, make test-fast does not

ROWS = [
    "training tokens/s (median step)",
    "training tokens/s (best step)",
    "training MFU (median step, % of the precision's peak matmul)",
    "training peak RSS (MiB)",
    "greedy decode tokens/s, KV cache (median)",
    "greedy decode tokens/s, KV cache (best)",
    "greedy tokens equal to HF fp32's (share)",
    "decode peak RSS (MiB), KV cache",
]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    # A fresh interpreter: the benchmark forks worker processes, which is only safe from a
    # process that has not run parallel (OpenMP) kernels yet, and pytest's has.
    json_path = tmp_path_factory.mktemp("bench") / "out.json"
    result = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "bench_gpt.py"),
            "--small",
            "--steps",
            "2",
            "--decode-repeats",
            "1",
            "--book",
            "--json",
            str(json_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout, json_path


def test_the_small_benchmark_prints_the_table_with_every_row(small_run):
    stdout, _ = small_run
    header = next(line for line in stdout.splitlines() if line.startswith("| measurement"))
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    assert columns == [
        "measurement",
        "ours fp32",
        "ours, fast path",
        "ours fp32, book attention",
        "HF GPT2LMHeadModel fp32 (attn: sdpa)",
        "HF, same autocast",
        "ours fast / HF fp32",
        "ours fast / HF same precision",
    ]
    rows = {line.split("|")[1].strip(): line for line in stdout.splitlines() if line.startswith("| ")}
    for row in ROWS:
        assert row in rows, f"missing row {row!r}"
        cells = [cell.strip() for cell in rows[row].strip("|").split("|")]
        assert len(cells) == 8
        float(cells[1]), float(cells[2])  # ours, both ways: numbers
        assert cells[6].endswith("x") and cells[7].endswith("x")  # the fast path's ratios against Hugging Face
    assert "Same weights, same logits" in stdout


def test_the_json_report_holds_the_same_measurements(small_run):
    import json

    _, json_path = small_run
    report = json.loads(json_path.read_text())
    assert set(report["training"]) == {"ours", "ours_fast", "book", "hf", "hf_fast"}
    assert len(report["training"]["ours"]["seconds"]) == 2  # --steps 2
    assert set(report["decode"]) == {"ours_cache", "ours_fast_cache", "hf_cache", "hf_fast_cache", "ours_no_cache"}
    # greedy decoding with the same weights: in float32, ours (with and without cache) and HF agree token for token
    for name in ("ours_cache", "ours_no_cache"):
        assert report["decode"][name]["same_tokens_as_hf"] and report["decode"][name]["token_agreement_with_hf"] == 1
    if not report["fast_bf16"]:  # the fast path is float32 on this CPU: the same tokens too
        assert report["decode"]["ours_fast_cache"]["same_tokens_as_hf"]
    for key in (
        "train_speedup_vs_hf_fp32",
        "train_speedup_vs_hf_same_precision",
        "decode_speedup_vs_hf_fp32",
        "train_speedup_fp32_vs_hf_fp32",
    ):
        assert report[key] > 0
    expected = report["training"]["ours_fast"]["tokens_per_s"] / report["training"]["hf"]["tokens_per_s"]
    assert report["train_speedup_vs_hf_fp32"] == pytest.approx(expected)
    assert report["fast_path"].startswith("fast path on cpu")
    assert report["flops_per_token"] == bench_gpt.flops_per_token(bench_gpt.SMALL, 64)
    assert report["attn_implementation"] == "sdpa"


def test_flops_per_token_is_6n_plus_the_attention_term():
    cfg = bench_gpt.GPTConfig.from_preset("gpt2-small", qkv_bias=True, tie_embeddings=True)
    # N = 124,412,160 (the book's count) + 12 * 2304 query/key/value biases
    #     - 786,432 position embeddings (a lookup) = 123,653,376
    assert bench_gpt.flops_per_token(cfg, 256) == 6 * 123_653_376 + 12 * 12 * 768 * 256 == 770_231_808
    # an untied head is one more matrix product's weights; the token embedding is a lookup
    assert bench_gpt.flops_per_token(cfg.replace(tie_embeddings=False), 256) == bench_gpt.flops_per_token(cfg, 256)


def test_ours_and_hugging_face_compute_the_same_logits_from_the_same_weights():
    cfg = bench_gpt.SMALL
    hf = bench_gpt.build_hf_model(cfg, seed=5).eval()
    ours = bench_gpt.ours_from_hf(hf, cfg).eval()
    book = bench_gpt.ours_from_hf(hf, cfg, book_attention=True).eval()
    idx = torch.randint(0, cfg.vocab_size, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = hf(input_ids=idx).logits
        torch.testing.assert_close(ours(idx), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(book(idx), expected, atol=1e-5, rtol=1e-5)
    assert isinstance(book.trf_blocks[0].att, bench_gpt.MultiHeadAttention)
    # and the comparison can fail: other weights give other logits
    other = bench_gpt.ours_from_hf(bench_gpt.build_hf_model(cfg, seed=6), cfg).eval()
    with torch.no_grad():
        assert not torch.allclose(other(idx), expected, atol=1e-3)


def test_split_fused_qkv_gives_the_books_three_matrices():
    qkv = torch.arange(6 * 2, dtype=torch.float32).view(6, 2)
    split = bench_gpt.split_fused_qkv({"trf_blocks.0.att.qkv.weight": qkv, "tok_emb.weight": qkv})
    assert split["trf_blocks.0.att.W_query.weight"].tolist() == [[0, 1], [2, 3]]
    assert split["trf_blocks.0.att.W_key.weight"].tolist() == [[4, 5], [6, 7]]
    assert split["trf_blocks.0.att.W_value.weight"].tolist() == [[8, 9], [10, 11]]
    assert split["tok_emb.weight"] is qkv


def test_bad_options_are_refused_with_a_message(capsys):
    with pytest.raises(SystemExit):
        bench_gpt.parse_args(["--steps", "0"])
    assert "--steps must be a positive integer, got 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="qkv_bias=True, tie_embeddings=True"):
        bench_gpt.hf_config(bench_gpt.SMALL.replace(tie_embeddings=False))


def test_the_chapter5_benchmark_runs_both_ways_and_compares_the_losses(tmp_path, data_dir):
    json_path = tmp_path / "chapter5.json"
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_chapter5.py"), "--small", "--rounds", "1", "--json", str(json_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    report = json.loads(json_path.read_text())
    assert len(report["chapter5_fp32_seconds"]) == len(report["chapter5_fast_seconds"]) == 1
    assert report["chapter5_speedup"] > 0 and report["evaluations"] == 2
    assert report["max_rel_diff_train_loss"] <= 0.02 and report["max_rel_diff_val_loss"] <= 0.02
    assert set(report["greedy_agreement_with_fp32"]) == {"fast", "bf16_forced"}
    assert all(0 <= share <= 1 for share in report["greedy_agreement_with_fp32"].values())
    assert "x faster" in result.stdout and "greedy tokens equal to float32's" in result.stdout


@requires_sandbox
def test_the_grading_benchmark_grades_a_class_every_way_with_the_same_grades(tmp_path):
    json_path = tmp_path / "grading.json"
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_grading.py"), "--small", "--jobs", "2", "--json", str(json_path)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    import json

    report = json.loads(json_path.read_text())
    for key in ("seconds_per_student_jobs1", "seconds_per_student_jobsN", "parallel_speedup", "sandbox_overhead_ratio"):
        assert report[key] > 0, key
    assert [run["run"] for run in report["runs"]] == ["jobs1", "jobs2", "unsafe-1", "jobs1-2"]
    assert [run["sandbox"] for run in report["runs"]] == [True, True, False, True]
    # the blank notebook gets 0, the solutions full marks, in every run (the script checks they agree)
    scores = sorted(score for score, _ in report["grades"].values())
    assert scores[0] == 0 and scores[-1] > 0
