"""Environment variables one edit away from a setting's name are named with the setting."""

import pytest

import config
from authsvc.startup import near_misses, one_edit_apart


@pytest.mark.parametrize(
    ("variable", "setting"),
    [
        ("DATABSE_URL", "DATABASE_URL"),
        ("DATABASE_URI", "DATABASE_URL"),
        ("DATABASE_URLS", "DATABASE_URL"),
        ("JWT_SECERT_KEY", "JWT_SECRET_KEY"),
        ("RATELIMIT_EMAIL_CHANGE_PER_USR", "RATELIMIT_EMAIL_CHANGE_PER_USER"),
        ("WEBAUTHN_RPID", "WEBAUTHN_RP_ID"),
        ("RATELIMIT_INTROSPECT_PER_CLIENTS", "RATELIMIT_INTROSPECT_PER_CLIENT"),
        ("RATELIMIT_OAUTH_PER_ADRESS", "RATELIMIT_OAUTH_PER_ADDRESS"),
        ("OAUTH_PROVIDER", "OAUTH_PROVIDERS"),
        ("OAUTH_GOGLE_CLIENT_ID", "OAUTH_GOOGLE_CLIENT_ID"),
        ("OAUTH_CORP_CLIENT_SECRT", "OAUTH_CORP_CLIENT_SECRET"),
    ],
)
def test_near_misses_name_the_setting_they_resemble(variable, setting):
    """A letter added, dropped, changed or two swapped: the variable and its setting."""
    assert near_misses({"OAUTH_PROVIDERS": "google,corp", variable: "x"}) == [(variable, setting)]


def test_settings_and_unrelated_variables_are_no_near_misses():
    """Every setting, provider settings, and PATH, HOME and the like pass silently."""
    environ = dict.fromkeys([*config.SETTINGS, "PATH", "HOME", "LANG", "MAIL", "PWD", "TERM"], "x")
    environ.update(OAUTH_PROVIDERS="corp", OAUTH_CORP_ISSUER="x", OAUTH_GITHUB_CLIENT_ID="x")
    assert near_misses(environ) == []


def test_every_setting_read_is_in_the_one_list():
    """The near-miss warning knows every name config.from_environment() reads."""

    class Recording(dict):
        """An environment that remembers which names were asked for."""

        asked = set()

        def get(self, name, default=None):
            """Note the name, and answer as an empty environment would."""
            self.asked.add(name)
            return default

    config.from_environment(Recording())
    assert Recording.asked <= config.SETTINGS


def test_one_edit_is_one_edit():
    """Insertions, deletions, substitutions and adjacent swaps are one edit; more is not."""
    assert one_edit_apart("DATAABSE_URL", "DATABASE_URL")
    assert not one_edit_apart("DATABASE_URL", "DATABASE_URL")
    assert not one_edit_apart("PATH", "PORT")
    assert not one_edit_apart("DTABASE_URLX", "DATABASE_URL")
