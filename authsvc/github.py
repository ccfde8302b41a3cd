"""GitHub's answer at the callback: who its access token belongs to, from its REST API.

GitHub speaks OAuth 2 without ID tokens, so the user comes from the API:
`GET /user` gives the subject (the numeric user id, which never changes,
unlike the login) and `GET /user/emails` the addresses. The primary one is
the email, and the `verified` flag of that very address decides whether it
counts as verified. The API is https://api.github.com for github.com and
<OAUTH_GITHUB_URL>/api/v3 for GitHub Enterprise Server.
"""

from authsvc.oidc import ProviderIdentity
from authsvc.providerhttp import ProviderRefused, fetch_json

API_VERSION = "2022-11-28"


def identity(state, token):
    """Return who a GitHub access token belongs to: their id, primary address and its flag."""
    headers = {
        "Authorization": f"Bearer {token['access_token']}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": API_VERSION,
    }
    api = state.provider.api_url
    user = fetch_json(f"{api}/user", "GitHub's /user", headers=headers)
    user_id = user.get("id")
    if not isinstance(user_id, int) or isinstance(user_id, bool) or user_id <= 0:
        raise ProviderRefused("GitHub's /user gave no numeric id")
    emails = fetch_json(f"{api}/user/emails", "GitHub's /user/emails", headers=headers, kind=list)
    primary = next(
        (entry for entry in emails if isinstance(entry, dict) and entry.get("primary") is True),
        None,
    )
    if primary is None or not isinstance(primary.get("email"), str):
        return ProviderIdentity(str(user_id), None, False)
    return ProviderIdentity(str(user_id), primary["email"], primary.get("verified") is True)
