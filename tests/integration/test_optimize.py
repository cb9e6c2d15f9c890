"""The whole optimize -> save -> load -> evaluate loop, as a maintainer runs it (CLI subprocesses, a real store,
real DSPy optimizers, a few calls each through the fake OpenAI-compatible server), and the HTML report in a
real browser.

The fake server answers every output field DSPy asks for; the tests set the fields an optimizer proposes
(MIPROv2's `proposed_instruction`, GEPA's `new_instruction`) to recognizable text, and then look for that
text, or for the bootstrapped demos, in the prompts the fake server receives from the agents."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright

from tests.fake_openai import FakeOpenAI
from tests.helpers import run_cli
from tests.integration.mini_corpus import write_mini_corpus
from tests.integration.test_browser_origin import FLAGS, ensure_chromium

MIPRO_INSTRUCTION = "Answer with one storage example and cite [1] (instruction proposed by MIPROv2)."
GEPA_INSTRUCTION = "Answer with one storage example and cite [1] (instruction proposed by GEPA)."


def cli(db_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli(
        *args,
        env={"DATABASE_URL": db_url, "CAIRO_CODER_EMBEDDINGS__PROVIDER": "none", **env},
        unset=("CAIRO_CODER_*", "*_API_KEY", "OPENAI_BASE_URL"),
        timeout=600,
    )


def optimize_args(program: str, train: Path, val: Path, out: Path, *options: str) -> list[str]:
    """`cairo-coder optimize` arguments (no compile check: the fake's answers are not meant to build)."""
    files = ["--trainset", str(train), "--valset", str(val), "--out", str(out)]
    return ["optimize", program, *files, "--no-compile", *options]


def generation_item(number: int, query: str, **extra: Any) -> dict[str, Any]:
    # The fake model's answer quotes the question, cites [1] and has ```cairo fn main() {}```: these items pass.
    return {
        "id": f"gen-{number:03d}",
        "agent": "cairo-coder",
        "query": query,
        "code_expected": True,
        "expected": {"api": ["fn main"]},
        "sources": ["cairo_book"],
        **extra,
    }


@pytest.fixture
def setup(db_url: str, tmp_path: Path, fake: FakeOpenAI) -> dict[str, Any]:
    corpus = write_mini_corpus(tmp_path / "corpus")
    done = cli(db_url, "ingest", "cairo_book", "scarb_docs", "--from", str(corpus), "--json")
    assert done.returncode == 0, done.stderr
    train = tmp_path / "train.jsonl"
    val = tmp_path / "val.jsonl"
    questions = [
        "How do I declare storage variables?",
        "How do I read a storage variable?",
        "How do I write to contract storage?",
        "How does a storage mapping work?",
    ]
    train.write_text("\n".join(json.dumps(generation_item(i, q)) for i, q in enumerate(questions, 1)) + "\n")
    val.write_text(
        json.dumps(generation_item(10, "What is a Map in storage?"))
        + "\n"
        + json.dumps(generation_item(11, "Which struct holds the storage?", expected={"api": ["fn main", "Vec"]}))
        + "\n"
    )
    env = {"CAIRO_CODER_MODEL": "openai/fake-model", "OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "sk-test"}
    return {"db": db_url, "train": train, "val": val, "env": env, "dir": tmp_path / "optimized"}


GOOD = "Declare it in the Storage struct [1].\n\n```cairo\nfn main() {}\n```"
BAD = "Declare it in the Storage struct."  # no code, no citation: a low score


def answer_rule(optimizer: str, train: list[str]) -> Any:
    """The fake model answers well only when the optimization worked: with demos in the prompt (bootstrap), with
    the proposed instruction (MIPROv2, GEPA). Training questions are answered well where bootstrapping needs a
    good teacher (bootstrap, MIPROv2); GEPA needs imperfect answers to reflect on."""

    def answer(body: dict[str, Any], query: str) -> str:
        messages = body.get("messages", [])
        system = str(messages[0].get("content", "")) if messages else ""
        if optimizer == "bootstrap-rs" and (len(messages) > 2 or query in train):
            return GOOD
        if optimizer == "mipro" and (MIPRO_INSTRUCTION in system or query in train):
            return GOOD
        if optimizer == "gepa" and GEPA_INSTRUCTION in system:
            return GOOD
        return BAD

    return answer


def prompts(fake: FakeOpenAI) -> str:
    return "\n".join(json.dumps(r["body"]["messages"]) for r in fake.chat_requests())


@pytest.mark.parametrize("optimizer", ["bootstrap-rs", "mipro", "gepa"])
def test_optimize_save_load_evaluate(setup: dict[str, Any], fake: FakeOpenAI, optimizer: str, tmp_path: Path) -> None:
    fake.fields["proposed_instruction"] = MIPRO_INSTRUCTION
    fake.fields["new_instruction"] = GEPA_INSTRUCTION
    train = [json.loads(line)["query"] for line in setup["train"].read_text().splitlines()]
    fake.fields["answer"] = answer_rule(optimizer, train)
    out = setup["dir"] / "cairo-coder" / "generation.json"
    options = ["--optimizer", optimizer, "--candidates", "2", "--max-metric-calls", "16", "--max-calls", "400"]
    done = cli(
        setup["db"], *optimize_args("generation", setup["train"], setup["val"], out, *options, "--yes"), **setup["env"]
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert "about" in done.stderr and "LM calls" in done.stderr, "the estimate is shown before starting"
    assert "validation score" in done.stdout
    saved = json.loads(out.read_text())
    meta = saved["cairo_coder"]
    assert meta["program"] == "generation" and meta["agent"] == "cairo-coder" and meta["optimizer"] == optimizer
    assert len(meta["trainset"]["sha256"]) == 64 and meta["valset"]["items"] == 2
    assert 0.0 <= meta["scores"]["before"] < meta["scores"]["after"] <= 1.0, (meta["scores"], done.stderr[-4000:])
    assert meta["models"]["generation"] == "openai/fake-model" and meta["lm_calls"] > 0
    assert meta["signature"] == {
        "generate.predict": {"inputs": ["chat_history", "query", "context"], "outputs": ["reasoning", "answer"]}
    }
    state = saved["generate.predict"]
    assert state["lm"] is None, "no model configuration (or key) is saved"
    if optimizer == "bootstrap-rs":
        assert state["demos"], "bootstrapped demos"
        assert set(state["demos"][0]) <= {"chat_history", "query", "context", "reasoning", "answer", "augmented"}
    else:
        wanted = MIPRO_INSTRUCTION if optimizer == "mipro" else GEPA_INSTRUCTION
        assert wanted in state["signature"]["instructions"]

    # Loaded by the agents: the prompts the pipeline sends change.
    fake.reset()
    env = {**setup["env"], "CAIRO_CODER_PIPELINE__OPTIMIZED_DIR": str(setup["dir"])}
    report = tmp_path / "report.html"
    evaluated = cli(
        setup["db"],
        "eval",
        "generation",
        "-d",
        str(setup["val"]),
        "--json",
        "--html",
        str(report),
        "--no-compile",
        **env,
    )
    assert evaluated.returncode == 0, evaluated.stderr
    data = json.loads(evaluated.stdout)
    assert data["summary"]["n"] == 2 and data["summary"]["errors"] == 0, [i["error"] for i in data["items"]]
    sent = prompts(fake)
    if optimizer == "bootstrap-rs":
        demo_query = state["demos"][0]["query"]
        assert demo_query in sent, "the bootstrapped demo is in the prompt"
    else:
        assert (MIPRO_INSTRUCTION if optimizer == "mipro" else GEPA_INSTRUCTION) in sent
    listed = json.loads(cli(setup["db"], "agents", "--json", **env).stdout)
    optimized = next(a for a in listed if a["id"] == "cairo-coder")["optimized"]
    assert optimized["generation"]["optimizer"] == optimizer
    assert optimized["generation"]["score_after"] == meta["scores"]["after"]


def test_eval_generation_scores_reports_and_compares(setup: dict[str, Any], fake: FakeOpenAI, tmp_path: Path) -> None:
    first = cli(setup["db"], "eval", "generation", "-d", str(setup["val"]), "--json", **setup["env"])
    assert first.returncode == 0, first.stderr
    before = tmp_path / "before.json"
    before.write_text(first.stdout)
    data = json.loads(first.stdout)
    scores = {item["id"]: item["score"] for item in data["items"]}
    assert scores["gen-010"] == 1.0, data["items"][0]["checks"]
    vec = next(i for i in data["items"] if i["id"] == "gen-011")
    expected = next(c for c in vec["checks"] if c["name"] == "expected")
    assert expected["score"] == 0.5 and "API item Vec" in expected["detail"]
    compiled = next(c for c in vec["checks"] if c["name"] == "compile")
    assert compiled["status"] == "skipped" and "not installed" in compiled["detail"], "never reported as passed"
    assert set(data["summary"]["checks"]) == {"code_block", "legacy_syntax", "citations", "expected", "compile"}

    # A worse model answer: the comparison names the item that got worse.
    fake.fields["answer"] = "Use `LegacyMap` [7]."
    html = tmp_path / "report.html"
    second = cli(
        setup["db"],
        "eval",
        "generation",
        "-d",
        str(setup["val"]),
        "--compare",
        str(before),
        "--html",
        str(html),
        **setup["env"],
    )
    assert second.returncode == 0, second.stderr
    assert "2 worse" in second.stdout and "HTML report" in second.stdout
    assert "legacy_syntax: outdated or wrong syntax: LegacyMap" in second.stdout

    no_model = cli(setup["db"], "eval", "generation", "-d", str(setup["val"]))
    assert no_model.returncode == 1 and "CAIRO_CODER_MODEL" in no_model.stderr


async def test_the_html_report_renders_with_its_charts(setup: dict[str, Any], tmp_path: Path) -> None:
    before = tmp_path / "before.json"
    first = cli(setup["db"], "eval", "generation", "-d", str(setup["val"]), "--json", **setup["env"])
    before.write_text(first.stdout)
    html = tmp_path / "report.html"
    done = cli(
        setup["db"],
        "eval",
        "generation",
        "-d",
        str(setup["val"]),
        "--compare",
        str(before),
        "--html",
        str(html),
        **setup["env"],
    )
    assert done.returncode == 0, done.stderr
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=ensure_chromium(), args=FLAGS)
        page = await browser.new_page()
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        await page.goto(html.as_uri())
        assert await page.title() == "cairo-coder answer evaluation"
        for chart in ("by-source", "by-check", "comparison"):
            bars = await page.locator(f"#{chart} svg rect.bar").count()
            assert bars >= 1, chart
            box = await page.locator(f"#{chart} svg").bounding_box()
            assert box is not None and box["width"] > 100, "the chart is laid out"
        assert await page.locator("details").count() == 2
        await browser.close()
    assert requests == [html.as_uri()], "the report fetches nothing"


def test_a_program_saved_for_another_program_or_signature_is_refused(
    setup: dict[str, Any], fake: FakeOpenAI, tmp_path: Path
) -> None:
    out = setup["dir"] / "cairo-coder" / "generation.json"
    options = ["--optimizer", "bootstrap-rs", "--candidates", "1", "--yes"]
    done = cli(setup["db"], *optimize_args("generation", setup["train"], setup["val"], out, *options), **setup["env"])
    assert done.returncode == 0, done.stderr
    misplaced = setup["dir"] / "cairo-coder" / "query_processor.json"
    misplaced.write_text(out.read_text())
    env = {**setup["env"], "CAIRO_CODER_PIPELINE__OPTIMIZED_DIR": str(setup["dir"])}
    refused = cli(setup["db"], "ask", "How do I declare storage?", **env)
    assert refused.returncode == 2, refused.stderr
    assert "was made for 'generation', not 'query_processor'" in refused.stderr
    misplaced.unlink()
    data = json.loads(out.read_text())
    data["cairo_coder"]["signature"]["generate.predict"]["inputs"] = ["question"]
    out.write_text(json.dumps(data))
    refused = cli(setup["db"], "ask", "How do I declare storage?", **env)
    assert refused.returncode == 2 and "was made for the signature" in refused.stderr


def test_budget_and_confirmation(setup: dict[str, Any], fake: FakeOpenAI, tmp_path: Path) -> None:
    args = optimize_args("generation", setup["train"], setup["val"], tmp_path / "g.json")
    stopped = cli(setup["db"], *args, "--max-calls", "3", "--yes", **setup["env"])
    assert stopped.returncode == 1 and "budget of 3 LM calls (--max-calls) is spent" in stopped.stderr
    assert "re-run with a higher --max-calls" in stopped.stderr and not (tmp_path / "g.json").exists()
    asked = cli(setup["db"], *args, **setup["env"])  # no --yes, no terminal: the answer is no
    assert asked.returncode == 1 and "Start?" in asked.stderr and not (tmp_path / "g.json").exists()
    no_model = cli(setup["db"], *args, "--yes")
    assert no_model.returncode == 1 and "CAIRO_CODER_MODEL" in no_model.stderr


def test_query_processor_and_pipeline_programs(setup: dict[str, Any], fake: FakeOpenAI, tmp_path: Path) -> None:
    qp = tmp_path / "qp.jsonl"
    rows = [
        ("How do I declare storage variables?", "ch01-storage.md"),
        ("Storage mappings like a hash table?", "ch01-storage.md"),
        ("How do I append to an array?", "ch02-arrays.md"),
    ]
    qp.write_text(
        "\n".join(
            json.dumps(
                {
                    "id": f"qp-{n}",
                    "query": query,
                    "sources": ["cairo_book"],
                    "relevant": [{"source": "cairo_book", "path": page}],
                }
            )
            for n, (query, page) in enumerate(rows, 1)
        )
        + "\n"
    )
    common = ["--optimizer", "bootstrap-rs", "--candidates", "1", "--yes"]
    out = tmp_path / "qp.json"
    done = cli(setup["db"], *optimize_args("query_processor", qp, qp, out, *common), **setup["env"])
    assert done.returncode == 0, done.stderr
    meta = json.loads(out.read_text())["cairo_coder"]
    assert meta["program"] == "query_processor" and list(meta["signature"]) == ["predict"]
    assert meta["scores"]["before"] > 0.5, "the fake's queries (the question itself) find the page: sources and rank"
    # A generation dataset is not a query-processing one: a clear error names the file and line.
    wrong = cli(setup["db"], *optimize_args("query_processor", setup["train"], qp, out, *common), **setup["env"])
    assert wrong.returncode == 2 and f"{setup['train']}:1:" in wrong.stderr

    pipeline_dir = tmp_path / "pipeline"
    done = cli(
        setup["db"], *optimize_args("pipeline", setup["train"], setup["val"], pipeline_dir, *common), **setup["env"]
    )
    assert done.returncode == 0, done.stderr
    saved = sorted(p.name for p in pipeline_dir.glob("*.json"))
    assert saved == ["generation.json", "query_processor.json"]
    for name in ("generation", "query_processor"):
        assert json.loads((pipeline_dir / f"{name}.json").read_text())["cairo_coder"]["program"] == name


def test_an_interrupted_run_resumes_without_paying_twice(
    setup: dict[str, Any], fake: FakeOpenAI, tmp_path: Path
) -> None:
    out = tmp_path / "g.json"
    options = ["--optimizer", "bootstrap-rs", "--candidates", "1", "--threads", "1", "--yes"]
    args = optimize_args("generation", setup["train"], setup["val"], out, *options)
    stopped = cli(setup["db"], *args, "--max-calls", "4", **setup["env"])
    assert stopped.returncode == 1 and "spent" in stopped.stderr
    assert len(fake.chat_requests()) == 4
    fake.reset()
    resumed = cli(setup["db"], *args, **setup["env"])
    assert resumed.returncode == 0, resumed.stderr
    paid = json.loads(out.read_text())["cairo_coder"]["lm_calls"]
    assert paid == len(fake.chat_requests()) > 0, "the count is what reached the provider"
    fake.reset()
    again = cli(setup["db"], *args, **setup["env"])
    assert again.returncode == 0, again.stderr
    assert fake.chat_requests() == [], "every call of a finished run is cached"
    assert json.loads(out.read_text())["cairo_coder"]["lm_calls"] == 0


async def test_the_retrieval_report_renders_too(setup: dict[str, Any], tmp_path: Path) -> None:
    dataset = tmp_path / "retrieval.jsonl"
    dataset.write_text(
        json.dumps(
            {"id": "r1", "query": "storage mappings", "relevant": [{"source": "cairo_book", "path": "ch01-storage.md"}]}
        )
        + "\n"
        + json.dumps(
            {
                "id": "r2",
                "query": "manifest edition key",
                "relevant": [{"source": "scarb_docs", "path": "reference/manifest.md"}],
            }
        )
        + "\n"
    )
    html = tmp_path / "retrieval.html"
    done = cli(setup["db"], "eval", "retrieval", "-d", str(dataset), "--html", str(html))
    assert done.returncode == 0, done.stderr
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=ensure_chromium(), args=FLAGS)
        page = await browser.new_page()
        await page.goto(html.as_uri())
        assert await page.title() == "cairo-coder retrieval evaluation"
        for chart in ("by-source", "mrr", "by-check"):
            assert await page.locator(f"#{chart} svg rect.bar").count() >= 1, chart
        assert "storage mappings" in await page.content()
        await browser.close()
