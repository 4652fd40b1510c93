"""WARDROBE_* settings from the environment: a value a setting cannot take stops the process at
start with a message naming the variable, rather than a bare traceback or a silent default."""
from __future__ import annotations

import pytest

from core.config import Settings, SettingError


@pytest.mark.parametrize("name, raw, says", [
    ("WARDROBE_MAX_UPLOAD_BYTES", "2G", "WARDROBE_MAX_UPLOAD_BYTES must be a whole number, not '2G'"),
    ("WARDROBE_REVIEW_BELOW", "half", "WARDROBE_REVIEW_BELOW must be a number, not 'half'"),
    ("WARDROBE_ALLOW_SIGNUP", "ture", "WARDROBE_ALLOW_SIGNUP must be true or false"),
    ("WARDROBE_AUTO_MIGRATE", "maybe", "WARDROBE_AUTO_MIGRATE must be true or false"),
    ("WARDROBE_WEBHOOK_RETRY_SCHEDULE", "5s,300", "WARDROBE_WEBHOOK_RETRY_SCHEDULE must be seconds"),
    ("WARDROBE_WEBHOOK_RETRY_SCHEDULE", "30,-5", "WARDROBE_WEBHOOK_RETRY_SCHEDULE must be seconds"),
])
def test_a_value_a_setting_cannot_take_names_its_variable(monkeypatch, name, raw, says):
    monkeypatch.setenv(name, raw)
    with pytest.raises(SettingError, match=says):
        Settings.from_env()


@pytest.mark.parametrize("raw, value", [("true", True), ("On", True), ("1", True), ("false", False), ("NO", False),
                                        ("0", False)])
def test_booleans_take_the_usual_spellings(monkeypatch, raw, value):
    monkeypatch.setenv("WARDROBE_ALLOW_SIGNUP", raw)
    monkeypatch.setenv("WARDROBE_AUTO_MIGRATE", raw)
    s = Settings.from_env()
    assert s.allow_signup is value and s.auto_migrate is value


def test_unset_auto_migrate_is_left_to_the_database(monkeypatch):
    monkeypatch.delenv("WARDROBE_AUTO_MIGRATE", raising=False)
    assert Settings.from_env().auto_migrate is None


def test_the_review_default_follows_the_model_card_unless_the_deployment_sets_one(tmp_path, monkeypatch):
    import json

    from core.config import Settings

    weights = tmp_path / "m.pt"
    weights.write_bytes(b"")
    monkeypatch.delenv("WARDROBE_REVIEW_BELOW", raising=False)
    assert Settings.from_env(model=str(weights)).review_below == 0.5  # no card: the built-in default
    (tmp_path / "m.json").write_text(json.dumps({"review_below": 0.4}))
    assert Settings.from_env(model=str(weights)).review_below == 0.4
    (tmp_path / "m.json").write_text(json.dumps({"review_below": "high"}))
    assert Settings.from_env(model=str(weights)).review_below == 0.5  # a card value that is no threshold
    (tmp_path / "m.json").write_text(json.dumps({"review_below": 0.4}))
    monkeypatch.setenv("WARDROBE_REVIEW_BELOW", "0.7")
    assert Settings.from_env(model=str(weights)).review_below == 0.7
    assert Settings.from_env(model=str(weights), review_below=0.2).review_below == 0.2


def test_per_class_thresholds_are_read_from_the_card_by_class_name(tmp_path):
    import json

    from segmentation.card import serve_conf_per_class

    weights = tmp_path / "m.pt"
    assert serve_conf_per_class(weights) == {}
    (tmp_path / "m.json").write_text(json.dumps({"serve_conf_per_class": {"shoe": 0.2, "hat": 0.45, "sock": 0.3}}))
    assert serve_conf_per_class(weights) == {0: 0.2, 15: 0.45}  # a name outside the 23 is ignored


def test_placeholder_secrets_are_refused_at_start_naming_each(monkeypatch, tmp_path):
    """`cp .env.example .env` and nothing changed: every server process refuses to start, naming the secrets
    (they were accepted silently)."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    example = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("WARDROBE_", "AWS_"))} | {
        "WARDROBE_DATA_DIR": str(tmp_path),
        "WARDROBE_SECRET_KEY": example["WARDROBE_SECRET_KEY"],
        "WARDROBE_DATABASE_URL": f"postgresql+psycopg://wardrobe:{example['POSTGRES_PASSWORD']}@127.0.0.1:9/wardrobe",
        "AWS_SECRET_ACCESS_KEY": example["MINIO_ROOT_PASSWORD"],
    }
    for command in (["serve", "--port", "9"], ["worker"], ["migrate"]):
        r = subprocess.run([sys.executable, "-m", "cli.main", *command], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        line = r.stderr.strip()
        assert len(line.splitlines()) == 1 and line.startswith("error: placeholder secrets"), line
        for name in ("WARDROBE_SECRET_KEY", "POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "AWS_SECRET_ACCESS_KEY"):
            assert name in line, (name, line)


def test_chosen_secrets_start(monkeypatch):
    from core.config import check_placeholder_secrets

    monkeypatch.setenv("WARDROBE_SECRET_KEY", "a-long-random-string-nobody-will-guess")
    monkeypatch.setenv("WARDROBE_DATABASE_URL", "postgresql+psycopg://wardrobe:s3cret@db:5432/wardrobe")
    settings = Settings.from_env()
    check_placeholder_secrets(settings, environ={"AWS_SECRET_ACCESS_KEY": "another-long-one"})
    with pytest.raises(SettingError, match="AWS_ACCESS_KEY_ID"):
        check_placeholder_secrets(settings, environ={"AWS_ACCESS_KEY_ID": "change-me"})
    monkeypatch.setenv("WARDROBE_BROKER_URL", "redis://:Change-Me-too@redis:6379/0")
    with pytest.raises(SettingError, match="the password in WARDROBE_BROKER_URL"):
        Settings.from_env()
