"""Another service checking authsvc's tokens as docs/relying-services.md says, against gunicorn.

The page's Python functions run as printed (with the JWKS, and by
introspection), and its curl block runs with bash.
"""

import os
import re
import shutil
import subprocess
import sys
from types import SimpleNamespace

import jwt
import pytest
import requests
from live import ROOT, flask_cli, gunicorn, migrated, service_environment

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("relying_party")]

ISSUER = "https://auth.test"
PASSWORD = "violet-kettle-orbit-42"

# jose's options as the page names them; issuer and audience only where set.
JOSE_VERIFY = """
import { createRemoteJWKSet, jwtVerify } from 'jose';

const [jwksUrl, algorithm, issuer, audience, token] = process.argv.slice(2);
const options = { algorithms: [algorithm], typ: 'at+jwt', requiredClaims: ['exp', 'sub'] };
if (issuer) options.issuer = issuer;
if (audience) options.audience = audience;
try {
  const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL(jwksUrl)), options);
  console.log(payload.sub);
} catch (error) {
  console.log(error.code);
  process.exit(1);
}
"""


DOCS = ROOT / "docs" / "relying-services.md"


def fenced_blocks(language):
    """Return the code of every fenced block of one language in docs/relying-services.md."""
    return re.findall(rf"^```{language}\n(.*?)^```", DOCS.read_text(), re.DOTALL | re.MULTILINE)


def docs_function(name):
    """Return a function from the page's python block that defines it, run as printed."""
    (block,) = [block for block in fenced_blocks("python") if f"\ndef {name}(" in block]
    namespace = {}
    exec(block, namespace)
    return namespace[name]


def registered_client(env):
    """Register a service with `flask clients create`, as an operator does; return id and secret."""
    created = flask_cli(env, "clients", "create", "relying party")
    assert created.returncode == 0, created.stderr
    printed = dict(line.split(": ", 1) for line in created.stdout.splitlines())
    return printed["client_id"], printed["client_secret"]


@pytest.fixture(
    scope="module",
    params=[
        ("EdDSA", ISSUER, "api"),
        ("EdDSA", None, None),
        ("RS256", ISSUER, "api"),
        ("RS256", None, None),
    ],
    ids=["EdDSA-iss-aud", "EdDSA", "RS256-iss-aud", "RS256"],
)
def service(request, tmp_path_factory):
    """Serve authsvc with one algorithm, issuer and audience; yield it with two token pairs."""
    algorithm, issuer, audience = request.param
    settings = {"JWT_ALGORITHM": algorithm}
    if audience:
        settings.update(JWT_ISSUER=issuer, JWT_AUDIENCE=audience)
    env = service_environment(tmp_path_factory.mktemp("relying-party"), **settings)
    migrated(env)
    client_id, client_secret = registered_client(env)
    with gunicorn(env, workers=1) as url:
        signup = requests.post(
            f"{url}/auth/signup", json={"email": "rp@example.com", "password": PASSWORD}
        )
        assert signup.status_code == 201, signup.text
        headers = {"Authorization": f"Bearer {signup.json()['refreshToken']}"}
        refreshed = requests.post(f"{url}/auth/refresh", headers=headers)
        assert refreshed.status_code == 200, refreshed.text
        yield SimpleNamespace(
            url=url,
            client_id=client_id,
            client_secret=client_secret,
            jwks_url=f"{url}/.well-known/jwks.json",
            algorithm=algorithm,
            issuer=issuer,
            audience=audience,
            pairs=[signup.json(), refreshed.json()],
            sub=str(signup.json()["id"]),
        )


def verify_as_docs_say(service, token):
    """Verify a token with the page's verify_access_token and the service's settings."""
    verify_access_token = docs_function("verify_access_token")
    jwks = jwt.PyJWKClient(service.jwks_url)
    return verify_access_token(
        token, jwks, algorithm=service.algorithm, issuer=service.issuer, audience=service.audience
    )


def test_docs_recipe_accepts_access_tokens(service):
    """The page's PyJWT function accepts access tokens from signup and refresh."""
    for pair in service.pairs:
        assert verify_as_docs_say(service, pair["accessToken"])["sub"] == service.sub


def test_docs_recipe_refuses_refresh_tokens(service):
    """The page's PyJWT function refuses refresh tokens, though they are validly signed."""
    for pair in service.pairs:
        key = jwt.PyJWKClient(service.jwks_url).get_signing_key_from_jwt(pair["refreshToken"])
        jwt.decode(pair["refreshToken"], key.key, algorithms=[service.algorithm])  # signed: yes
        with pytest.raises(jwt.InvalidTokenError):
            verify_as_docs_say(service, pair["refreshToken"])


def introspect_as_docs_say(service, token):
    """Ask authsvc about a token with the page's introspect and the registered client."""
    introspect = docs_function("introspect")
    return introspect(
        token,
        url=f"{service.url}/oauth/introspect",
        client_id=service.client_id,
        client_secret=service.client_secret,
    )


def test_docs_introspection_says_access_tokens_are_active(service):
    """The page's introspect returns a live access token's claims, and None for a refresh token."""
    for pair in service.pairs:
        claims = introspect_as_docs_say(service, pair["accessToken"])
        assert (claims["active"], claims["sub"]) == (True, service.sub)
        assert (claims.get("iss"), claims.get("aud")) == (service.issuer, service.audience)
        assert introspect_as_docs_say(service, pair["refreshToken"]) is None


def test_docs_introspection_sees_a_signout_at_once(service):
    """A token that the JWKS still verifies is no longer live for introspection once signed out."""
    signin = requests.post(
        f"{service.url}/auth/signin", json={"email": "rp@example.com", "password": PASSWORD}
    ).json()
    assert introspect_as_docs_say(service, signin["accessToken"])["active"] is True
    headers = {"Authorization": f"Bearer {signin['accessToken']}"}
    assert requests.post(f"{service.url}/auth/signout", headers=headers).status_code == 204
    assert introspect_as_docs_say(service, signin["accessToken"]) is None
    assert verify_as_docs_say(service, signin["accessToken"])["sub"] == service.sub


def test_docs_introspection_raises_for_a_wrong_secret(service):
    """A wrong client secret is authsvc refusing the question: requests.HTTPError, 401."""
    introspect = docs_function("introspect")
    with pytest.raises(requests.HTTPError) as refused:
        introspect(
            service.pairs[0]["accessToken"],
            url=f"{service.url}/oauth/introspect",
            client_id=service.client_id,
            client_secret="not-the-secret",
        )
    assert refused.value.response.status_code == 401


def test_docs_curl_block_runs_against_gunicorn(tmp_path):
    """The page's curl block exits 0 under HS256, twice, with the service's own CLI settings."""
    env = service_environment(tmp_path)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env["PATH"]])
    migrated(env)
    script = "set -euo pipefail\n" + "\n".join(fenced_blocks("sh"))
    with gunicorn(env, workers=1) as url:
        for run in ("first", "second"):
            done = subprocess.run(
                ["bash", "-c", script],
                cwd=ROOT,
                env={**env, "BASE": url},
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, f"{run} run:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def jose_script(tmp_path_factory):
    """Install jose for Node in a scratch folder; skip without node, npm or the registry."""
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("no node and npm: the jose check is optional")
    folder = tmp_path_factory.mktemp("jose")
    try:
        installed = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "jose@6"],
            cwd=folder,
            capture_output=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        pytest.skip("npm install jose timed out: the jose check is optional")
    if installed.returncode != 0:
        pytest.skip(f"npm install jose failed: {installed.stderr.decode()[-300:]}")
    script = folder / "verify.mjs"
    script.write_text(JOSE_VERIFY)
    return script


def verify_with_jose(script, service, token):
    """Run jose's jwtVerify on a token; return whether it accepted it, and what it printed."""
    settings = [service.jwks_url, service.algorithm, service.issuer or "", service.audience or ""]
    result = subprocess.run(
        ["node", str(script), *settings, token], capture_output=True, text=True, timeout=60
    )
    return result.returncode == 0, result.stdout.strip()


def test_jose_accepts_access_tokens_and_refuses_refresh_tokens(service, jose_script):
    """Node's jose, with the options the page names, tells the two kinds apart too."""
    for pair in service.pairs:
        assert verify_with_jose(jose_script, service, pair["accessToken"]) == (True, service.sub)
        accepted, code = verify_with_jose(jose_script, service, pair["refreshToken"])
        assert not accepted and code.startswith("ERR_JWT_CLAIM_VALIDATION_FAILED")
