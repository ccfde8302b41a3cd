"""Another service verifying authsvc's tokens the README's way, against a live gunicorn."""

import re
import shutil
import subprocess
from types import SimpleNamespace

import jwt
import pytest
import requests
from live import ROOT, gunicorn, migrated, service_environment

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("relying_party")]

ISSUER = "https://auth.test"
PASSWORD = "violet-kettle-orbit-42"

# jose's options as the README names them; issuer and audience only where set.
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


def readme_function(name):
    """Return a function from the README's python block that defines it, run as printed."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    (block,) = [block for block in blocks if f"\ndef {name}(" in block]
    namespace = {}
    exec(block, namespace)
    return namespace[name]


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
    with gunicorn(env, workers=1) as url:
        signup = requests.post(
            f"{url}/auth/signup", json={"email": "rp@example.com", "password": PASSWORD}
        )
        assert signup.status_code == 201, signup.text
        headers = {"Authorization": f"Bearer {signup.json()['refreshToken']}"}
        refreshed = requests.post(f"{url}/auth/refresh", headers=headers)
        assert refreshed.status_code == 200, refreshed.text
        yield SimpleNamespace(
            jwks_url=f"{url}/.well-known/jwks.json",
            algorithm=algorithm,
            issuer=issuer,
            audience=audience,
            pairs=[signup.json(), refreshed.json()],
            sub=str(signup.json()["id"]),
        )


def verify_as_readme_says(service, token):
    """Verify a token with the README's verify_access_token and the service's settings."""
    verify_access_token = readme_function("verify_access_token")
    jwks = jwt.PyJWKClient(service.jwks_url)
    return verify_access_token(
        token, jwks, algorithm=service.algorithm, issuer=service.issuer, audience=service.audience
    )


def test_readme_recipe_accepts_access_tokens(service):
    """The README's PyJWT function accepts access tokens from signup and refresh."""
    for pair in service.pairs:
        assert verify_as_readme_says(service, pair["accessToken"])["sub"] == service.sub


def test_readme_recipe_refuses_refresh_tokens(service):
    """The README's PyJWT function refuses refresh tokens, though they are validly signed."""
    for pair in service.pairs:
        key = jwt.PyJWKClient(service.jwks_url).get_signing_key_from_jwt(pair["refreshToken"])
        jwt.decode(pair["refreshToken"], key.key, algorithms=[service.algorithm])  # signed: yes
        with pytest.raises(jwt.InvalidTokenError):
            verify_as_readme_says(service, pair["refreshToken"])


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
    """Node's jose, with the options the README names, tells the two kinds apart too."""
    for pair in service.pairs:
        assert verify_with_jose(jose_script, service, pair["accessToken"]) == (True, service.sub)
        accepted, code = verify_with_jose(jose_script, service, pair["refreshToken"])
        assert not accepted and code.startswith("ERR_JWT_CLAIM_VALIDATION_FAILED")
