"""The serving benchmark's rivals mode (benchmarks/rivals.py and its helpers), without the
rivals' venv: option checking, the wrk script, the tables and ratios, and the model the
rival servers wrap (it imports only Chassis, numpy and ONNX Runtime, present here)."""

import importlib
import os
import py_compile
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"


def bench(module: str) -> Any:
    """A benchmark module, imported as the benchmarks import each other (by file name)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(module)


def point(rps: float, p99: float = 1.0) -> dict[str, float]:
    return {"rps": rps, "p50": p99 / 2, "p99": p99, "non2xx": 0}


def test_choices_keep_the_order_and_drop_repeats() -> None:
    rivals = bench("rivals")
    names = rivals.choices("ray, bentoml,ray", rivals.RIVALS, "--rivals")
    assert names == ["ray", "bentoml"]


@pytest.mark.parametrize("value", ["bentoml,torchserve", "", " , "])
def test_choices_refuse_an_unknown_or_empty_list_naming_the_option(value: str) -> None:
    rivals = bench("rivals")
    with pytest.raises(ValueError, match=r"^--rivals: .*choose from bentoml, ray"):
        rivals.choices(value, rivals.RIVALS, "--rivals")


@pytest.mark.parametrize("value", ["1,x", "0,8"])
def test_connection_counts_refuse_non_positive_integers(value: str) -> None:
    rivals = bench("rivals")
    with pytest.raises(ValueError, match=r"^--connections: "):
        rivals.connection_counts(value)


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [("--rivals", "torchserve", "--rivals: unknown 'torchserve'"), ("--models", "bert", "bert")],
)
def test_a_bad_choice_ends_the_run_with_one_error_line(
    option: str, value: str, named: str, tmp_path: Path
) -> None:
    """Before anything is released or started: the script exits non-zero with one line."""
    extra = [] if option == "--rivals" else ["--rivals", "ray"]
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ["PYTHONPATH"]])}
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "serving.py"), option, value, *extra],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("error: ") and named in result.stderr


def test_the_default_run_keeps_the_floor_and_mlflow_mode() -> None:
    """Without --rivals, serving.py measures what it always did (the rivals stay off)."""
    args = bench("serving").parse_args([])
    assert args.rivals == "" and args.models == "digits,minilm" and args.rival_workers == 2


def test_ratio_pairs_rounds_in_order_and_gives_median_and_range() -> None:
    rivals = bench("rivals")
    gateway = [point(100), point(90), point(120)]
    rival = [point(50), point(60), point(40)]
    ratio = rivals.ratio(gateway, rival, "rps")
    assert (ratio.median, ratio.low, ratio.high) == (2.0, 1.5, 3.0)
    assert ratio.cell() == "2.00x (1.50-3.00)"
    assert rivals.ratio([point(10)], [point(5)], "rps").cell() == "2.00x"


def test_markdown_tables_give_every_server_and_the_gateway_over_each_rival(
    tmp_path: Path,
) -> None:
    rivals = bench("rivals")
    model = rivals.ServedModel("digits-mlp", 1, tmp_path / "model.onnx", None, None, ["{}"])
    results = {
        rivals.GATEWAY: {1: [point(1000, 2.0)], 8: [point(3000, 4.0)]},
        "Ray Serve": {1: [point(250, 8.0)], 8: [point(500, 2.0)]},
    }
    table = rivals.markdown(model, results, [1, 8])
    assert "| chassis gateway | 8 | 3000 | 2.00 | 4.00 | 0 |" in table
    assert "| conns | gateway / Ray Serve (req/s) | gateway p99 / Ray Serve p99 |" in table
    assert "| 1 | 4.00x | 0.25x |" in table
    assert "| 8 | 6.00x | 2.00x |" in table


def test_behind_names_each_point_where_a_rival_is_at_least_as_fast() -> None:
    rivals = bench("rivals")
    results = {
        rivals.GATEWAY: {1: [point(100)], 8: [point(100)]},
        "BentoML": {1: [point(50)], 8: [point(150)]},
    }
    assert rivals.behind(results, [1, 8]) == ["BentoML at 8 connections: gateway 100 req/s vs 150"]


def test_rounds_rotate_the_order_of_the_servers() -> None:
    rivals = bench("rivals")
    names = ["gateway", "bentoml", "ray"]
    assert [rivals.rotated(names, r)[0] for r in range(4)] == [
        "gateway",
        "bentoml",
        "ray",
        "gateway",
    ]


def test_wrk_script_cycles_through_bodies_read_from_a_file(tmp_path: Path) -> None:
    serving = bench("serving")
    script = tmp_path / "load.lua"
    bodies = ['{"instances": ["caf\\u00e9"]}', '{"instances": ["b"]}']
    serving.wrk_script(bodies, script)
    assert (tmp_path / "load.bodies").read_text().splitlines() == bodies
    text = script.read_text()
    assert "io.lines(" in text and "request = function()" in text
    serving.wrk_script('{"a": 1}', script)
    assert 'wrk.body = "{\\"a\\": 1}"' in script.read_text()


@pytest.mark.parametrize(
    "script", ["rival_bentoml.py", "rival_ray.py", "rival_litserve.py", "rivals_env.py"]
)
def test_the_rival_scripts_compile(script: str, tmp_path: Path) -> None:
    py_compile.compile(str(BENCHMARKS / script), cfile=str(tmp_path / "out.pyc"), doraise=True)


def identity_model(path: Path) -> Path:
    """A graph whose logits are its input: the label is the column of each row's maximum."""
    features = helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, 3])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 3])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["features"], ["logits"])], "id", [features], [logits]
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_the_rival_model_answers_each_request_of_a_batch_its_own_rows(tmp_path: Path) -> None:
    rival_model = bench("rival_model")
    model = rival_model.RivalModel(identity_model(tmp_path / "m.onnx"), None, None)
    requests = [[[0.0, 1.0, 0.0]], [[2.0, 0.0, 0.0], [0.0, 0.0, 5.0]], [[0.0, 3.0, 1.0]]]
    assert model.labels_per_request(requests) == [[1], [0, 2], [1]]


def test_the_rival_model_uses_the_gateways_session_settings(tmp_path: Path) -> None:
    rival_model = bench("rival_model")
    model = rival_model.RivalModel(identity_model(tmp_path / "m.onnx"), None, None)
    options = model.session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    assert model.labels(np.eye(3).tolist()) == [0, 1, 2]


def test_process_tree_finds_and_kills_a_child_in_a_session_of_its_own() -> None:
    """As BentoML's workers do: the child calls setsid, so only ancestry still finds it."""
    process_tree = bench("process_tree")
    parent = subprocess.Popen(["bash", "-c", "setsid sleep 60 & wait"])
    try:
        deadline = time.monotonic() + 10
        family = process_tree.descendants(parent.pid)
        while len(family) < 2 and time.monotonic() < deadline:  # bash starting its child
            time.sleep(0.01)
            family = process_tree.descendants(parent.pid)
        assert family[0] == parent.pid and len(family) == 2
        child = family[1]
        assert os.getsid(child) != os.getsid(parent.pid)
        assert process_tree.cpu_seconds(parent.pid) >= 0
        process_tree.kill_all(process_tree.identities([child]))
        parent.wait(timeout=10)  # bash's `wait` returns once its child is gone
        assert child not in process_tree.descendants(os.getpid())
    finally:
        parent.kill()
        parent.wait()


@pytest.mark.parametrize(
    "argv", [["--models", "minilm"], ["--rival-workers", "1"], ["--json", "x.json"]]
)
def test_rival_options_without_rivals_are_refused_not_ignored(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench("serving").parse_args(argv)
    assert exit_info.value.code == 2
    assert f"{argv[0]} only apply with --rivals" in capsys.readouterr().err
