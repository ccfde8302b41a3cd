// A real OpenID Provider on loopback for authsvc's tests and its walk-through:
// panva's oidc-provider (OpenID Certified), with its development login and
// consent pages (devInteractions). Not for production: any login signs in.
//
// The login typed on its page is the account: its `sub`, and its email
// (`<login>@example.com` unless the login is an address already). An
// address whose local part starts with "unverified" comes with
// email_verified: false; every other with true.
//
// Settings (environment): OIDC_PORT (9000), OIDC_CLIENT_ID (authsvc-local),
// OIDC_CLIENT_SECRET (local-test-secret), OIDC_REDIRECT_URIS (comma-separated;
// http://127.0.0.1:8000/auth/oauth/local/callback). It prints one line,
// "oidc-provider listening on <issuer>", once it serves.
import { Provider } from "oidc-provider";

const port = Number(process.env.OIDC_PORT || 9000);
const issuer = `http://127.0.0.1:${port}`;
const redirectUris = (
  process.env.OIDC_REDIRECT_URIS || "http://127.0.0.1:8000/auth/oauth/local/callback"
)
  .split(",")
  .map((uri) => uri.trim())
  .filter(Boolean);

function account(login) {
  const email = login.includes("@") ? login.toLowerCase() : `${login.toLowerCase()}@example.com`;
  return {
    sub: login,
    email,
    email_verified: !email.startsWith("unverified"),
    name: login,
  };
}

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: process.env.OIDC_CLIENT_ID || "authsvc-local",
      client_secret: process.env.OIDC_CLIENT_SECRET || "local-test-secret",
      redirect_uris: redirectUris,
      grant_types: ["authorization_code"],
      response_types: ["code"],
    },
  ],
  claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"] },
  // Random per start: this provider keeps nothing.
  cookies: { keys: [crypto.randomUUID(), crypto.randomUUID()] },
  features: { devInteractions: { enabled: true } },
  // PKCE on every authorization request, confidential clients too.
  pkce: { required: () => true },
  async findAccount(ctx, sub) {
    return { accountId: sub, claims: async () => account(sub) };
  },
});

provider.listen(port, "127.0.0.1", () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
