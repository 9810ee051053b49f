import tomllib

import pytest
from pydantic import ValidationError

from tagmill.config import (ARCHITECTURES, CODE_METHODS, EVENT_FORMATS, LABEL_SPACES, LOSSES, POOLINGS, TIERS, Config,
                            ConfigError, MiningConfig, config_from_dict, load_config, to_toml)
from tagmill.jobs.cli import _overrides, build_parser


def test_defaults_round_trip_through_toml():
    cfg = load_config(None)
    assert config_from_dict(tomllib.loads(to_toml(cfg))) == cfg


def test_file_values_override_defaults(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[run]\ndate = "2026-01-02"\n[mining]\nmin_label_images = 3\n'
                    'tier_weights = { click = 0.2, contact = 0.5, in_conversation = 0.95 }\n')
    cfg = load_config(path)
    assert cfg.run.date == "2026-01-02"
    assert cfg.mining.min_label_images == 3
    assert cfg.mining.tier_weights == {"click": 0.2, "contact": 0.5, "in_conversation": 0.95}
    assert cfg.mining.retention_days == Config().mining.retention_days


@pytest.mark.parametrize("data, key, words", [
    ({"mining": {"min_lable_images": 3}}, "mining.min_lable_images", "did you mean 'min_label_images'"),
    ({"minning": {}}, "minning", "did you mean 'mining'"),
    ({"mining": {"min_label_images": "ten"}}, "mining.min_label_images", "expected int"),
    ({"mining": {"min_label_images": True}}, "mining.min_label_images", "expected int"),
    ({"mining": {"label_tier": "purchase"}}, "mining.label_tier", "use one of click, contact, in_conversation"),
    ({"run": {"date": "20/11/2026"}}, "run.date", "YYYY-MM-DD"),
    ({"spark": {"master": "localhost"}}, "spark.master", "spark://HOST:PORT"),
    ({"mining": {"tier_weights": {"click": 0.3}}}, "mining.tier_weights", "each a weight"),
    ({"demo": {"images_per_listing": [3, 1]}}, "demo.images_per_listing", "1 <= min <= max"),
])
def test_bad_values_name_the_key_and_the_fix(data, key, words):
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert err.value.key == key
    assert words in str(err.value)


def test_missing_file_and_bad_toml_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="no file at"):
        load_config(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_command_line_overrides():
    args = build_parser().parse_args(["mine-logs", "--date", "2026-11-20", "--master", "spark://127.0.0.1:7077",
                                      "--set", "mining.min_label_images=4", "--set", "mining.label_tier=contact"])
    assert _overrides(args) == {
        "mining": {"min_label_images": 4, "label_tier": "contact"},
        "run": {"date": "2026-11-20"},
        "spark": {"master": "spark://127.0.0.1:7077"},
    }
    cfg = load_config(None, _overrides(args))
    assert (cfg.mining.min_label_images, cfg.spark.master) == (4, "spark://127.0.0.1:7077")


def _comment_text(toml: str) -> str:
    """The # comments of `toml` as one text, lines joined by a space (the wrapping never breaks a word)."""
    return " ".join(line[2:] for line in toml.splitlines() if line.startswith("# "))


def test_config_show_documents_every_key_and_reads_back(capsys):
    from tagmill.jobs.cli import cmd_config_show

    assert cmd_config_show(build_parser().parse_args(["config", "show", "--set", "mining.min_label_images=4"])) == 0
    text = capsys.readouterr().out
    cfg = config_from_dict(tomllib.loads(text))
    assert cfg == load_config(None, {"mining": {"min_label_images": 4}})
    comments = _comment_text(text)
    for section, info in Config.model_fields.items():
        model = info.annotation
        for doc in [model.__doc__, *(field.description for field in model.model_fields.values())]:
            if doc:
                assert " ".join(doc.split()) in comments, (section, doc)
    assert to_toml(cfg) == "\n".join(line for line in text.splitlines() if not line.startswith("#")) + "\n"


@pytest.mark.parametrize("section, key, choices", [
    ("inputs", "events_format", EVENT_FORMATS), ("mining", "label_tier", TIERS),
    ("dataset", "label_space", LABEL_SPACES), ("image_pass", "code_method", CODE_METHODS),
    ("train", "loss", LOSSES), ("train", "arch", ARCHITECTURES), ("train", "pooling", POOLINGS),
])
def test_choices_are_refused_with_the_list(section, key, choices):
    with pytest.raises(ConfigError) as err:
        config_from_dict({section: {key: "nonesuch"}})
    assert err.value.key == f"{section}.{key}"
    assert str(err.value).endswith(f"Fix: use one of {', '.join(choices)}")
    assert getattr(config_from_dict({section: {key: choices[-1]}}), section).model_dump()[key] == choices[-1]


@pytest.mark.parametrize("data, message", [
    ({"dataset": {"jpeg_quality": 101}}, "config key 'dataset.jpeg_quality': must be in 1..100. Fix: use e.g. 90"),
    ({"image_pass": {"threshold": 2}}, "config key 'image_pass.threshold': 2.0 is not in (0, 1]. Fix: use e.g. 0.5"),
    ({"image_pass": {"code_bits": 12}},
     "config key 'image_pass.code_bits': 12 is not a multiple of 8 in 8..1024. Fix: use 64, 128 or 256"),
    ({"train": {"weight_decay": -1}}, "config key 'train.lr': lr must be positive, weight_decay and warmup_epochs "
                                      "not negative. Fix: use e.g. lr = 0.01"),
    ({"demo": {"chinese_share": 1}}, "config key 'demo.chinese_share': must be a share in [0, 1). Fix: set e.g. 0.05"),
    ({"demo": {"images_per_listing": [1, 2, 3]}},
     "config key 'demo.images_per_listing': expected 2 values, got 3. Fix: give exactly 2"),
    ({"mining": {"tier_weights": {"click": "x"}}},
     "config key 'mining.tier_weights.click': expected float, got str 'x'. Fix: write a float value"),
    ({"text": {"stopwords": "the"}},
     "config key 'text.stopwords': expected a list, got 'the'. Fix: write it as [a, b, ...]"),
    ({"mining": {"resample_factor": 2}},
     "config key 'mining.resample_factor': moved. Fix: write it as dataset.resample_factor"),
    ({"xyzzy": {}}, "config key 'xyzzy': unknown key. Fix: valid keys in the config file: run, spark, inputs, outputs, "
                    "text, mining, image_pass, dedup, taxonomy, side_info, dataset, train, demo"),
])
def test_bounds_and_types_keep_their_messages(data, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert str(err.value) == message


def test_types_are_kept_and_sections_are_frozen_and_validated():
    cfg = config_from_dict({"dataset": {"resample_factor": 3}, "text": {"stopwords": ["a"]}})
    assert cfg.dataset.resample_factor == 3.0 and isinstance(cfg.dataset.resample_factor, float)
    assert cfg.text.stopwords == ("a",)
    assert "resample_factor = 3.0\n" in to_toml(cfg)
    with pytest.raises(ValidationError):
        cfg.mining.min_label_images = 3
    with pytest.raises(ValidationError):
        MiningConfig(min_label_images=0)  # a section built in code is checked too
    with pytest.raises(ConfigError, match="mining.min_label_images"):
        cfg.replace("mining", min_label_images=0)
    assert cfg.replace("mining", min_label_images=4).mining.min_label_images == 4


def _attribute_docstrings(source: str) -> dict[tuple[str, str], str]:
    """(class, attribute) -> the docstring written under the attribute in `source` (read with ast)."""
    import ast

    docs = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            for first, second in zip(node.body, node.body[1:]):
                if (isinstance(first, ast.AnnAssign) and isinstance(first.target, ast.Name)
                        and isinstance(second, ast.Expr) and isinstance(second.value, ast.Constant)
                        and isinstance(second.value.value, str)):
                    docs[(node.name, first.target.id)] = second.value.value
    return docs


def test_config_show_prints_the_docstrings_of_config_py(capsys):
    import inspect

    import tagmill.config
    from tagmill.jobs.cli import main

    docs = _attribute_docstrings(inspect.getsource(tagmill.config))
    assert main(["config", "show"]) == 0
    text = capsys.readouterr().out
    comments = _comment_text(text)
    assert " ".join(docs[("MiningConfig", "retention_days")].split()) in comments
    assert "retention_days = 90" in text
    sections = {info.annotation.__name__ for info in Config.model_fields.values()}
    shown = [doc for (cls, _), doc in docs.items() if cls in sections]
    assert len(shown) > 100 and all(" ".join(doc.split()) in comments for doc in shown)


def _written_tables(module) -> set[str]:
    """The table names a stage job passes to `stage.write` / `write` / `write_rows` (string arguments, and the
    names of a `for name in (...)` loop around such a call)."""
    import ast
    import inspect

    tables = set()
    tree = ast.parse(inspect.getsource(module))

    def is_write(call) -> bool:
        if not isinstance(call, ast.Call):
            return False
        f = call.func
        return (isinstance(f, ast.Name) and f.id in ("write", "write_rows") or isinstance(f, ast.Attribute)
                and f.attr == "write" and isinstance(f.value, ast.Name) and f.value.id == "stage")

    for node in ast.walk(tree):
        if is_write(node) and len(node.args) == 2 and isinstance(node.args[1], ast.Constant):
            tables.add(node.args[1].value)
        if isinstance(node, ast.For) and isinstance(node.iter, ast.Tuple) and any(
                is_write(n) for n in ast.walk(node)):
            tables |= {e.value for e in node.iter.elts if isinstance(e, ast.Constant)}
    return tables


@pytest.mark.parametrize("stage", ["mine-logs", "image-pass", "side-info", "taxonomy", "assemble", "shards"])
def test_a_stage_s_help_names_what_it_reads_and_every_table_it_writes(stage, capsys):
    import importlib

    module = importlib.import_module(f"tagmill.jobs.{stage.replace('-', '_')}")
    with pytest.raises(SystemExit):
        build_parser().parse_args([stage, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "reads:" in text and f"ROOT/{stage}/<table>/run_date=D/" in text
    tables = _written_tables(module)
    assert tables and all(f" {t}," in text or f" {t} " in text for t in tables), (tables, text)
    assert f"ROOT/{stage}/_runs/run_date=D/summary.json" in text
