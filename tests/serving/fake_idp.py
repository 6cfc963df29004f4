"""An OpenID Connect identity provider for tests, served on a loopback port by a thread: discovery, an
authorization endpoint that signs in whoever the test chose (or refuses), a token endpoint that checks the
client's secret, the code's single use, its redirect URI and the PKCE verifier, and the keys. ID tokens are
RS256 JWTs; ``tamper`` changes a claim, ``foreign_key`` signs with a key the provider does not publish.
Serve ``app()`` with ``tests.serving.conftest.live`` and set ``issuer`` to its address."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from flask import Flask, abort, jsonify, redirect, request
from joserfc import jwt
from joserfc.jwk import RSAKey

CLIENT_ID = "helploop-test"
CLIENT_SECRET = "s3cret-for-tests"


@dataclass
class FakeIdP:
    person: dict[str, Any] | None = None  # the claims of whoever signs in at the provider; None: refuses
    tamper: dict[str, Any] = field(default_factory=dict)  # claims overridden in the ID token
    foreign_key: bool = False
    issuer_in_document: str | None = None  # None: the real issuer
    issuer: str = ""
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    key: Any = None
    other_key: Any = None

    def __post_init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"}, private=True)
        self.other_key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"}, private=True)

    def logout_token(self, subject: str, *, foreign_key: bool = False, **claims: Any) -> str:
        """A back-channel logout token for ``subject`` (claims given are added or override; None drops)."""
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "iat": now,
            "jti": secrets.token_hex(8),
            "sub": subject,
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
            **claims,
        }
        body = {k: v for k, v in body.items() if v is not None}
        key = self.other_key if foreign_key else self.key
        return jwt.encode({"alg": "RS256", "kid": "k1"}, body, key)

    def app(self) -> Flask:
        app = Flask("fake_idp")

        @app.get("/.well-known/openid-configuration")
        def discovery() -> Any:
            return jsonify(
                issuer=self.issuer_in_document or self.issuer,
                authorization_endpoint=f"{self.issuer}/authorize",
                token_endpoint=f"{self.issuer}/token",
                jwks_uri=f"{self.issuer}/jwks",
                response_types_supported=["code"],
                subject_types_supported=["public"],
                id_token_signing_alg_values_supported=["RS256"],
                code_challenge_methods_supported=["S256"],
            )

        @app.get("/jwks")
        def jwks() -> Any:
            return jsonify(keys=[self.key.as_dict(private=False)])

        @app.get("/authorize")
        def authorize() -> Any:
            args = request.args.to_dict()
            self.authorize_requests.append(args)
            target = args["redirect_uri"]
            if self.person is None:
                query = {
                    "error": "access_denied",
                    "error_description": "the user cancelled",
                    "state": args["state"],
                }
                return redirect(f"{target}?{urlencode(query)}")
            code = secrets.token_urlsafe(16)
            self.codes[code] = {**args, "person": dict(self.person)}
            return redirect(f"{target}?{urlencode({'code': code, 'state': args['state']})}")

        @app.post("/token")
        def token() -> Any:
            form = request.form.to_dict()
            self.token_requests.append(form)
            auth = request.authorization
            if auth is None or (auth.username, auth.password) != (CLIENT_ID, CLIENT_SECRET):
                return jsonify(error="invalid_client"), 401
            grant = self.codes.pop(form.get("code", ""), None)  # single use
            if grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
                return jsonify(error="invalid_grant"), 400
            verifier = form.get("code_verifier", "")
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
            if challenge.decode() != grant.get("code_challenge"):
                return jsonify(error="invalid_grant", error_description="PKCE verifier does not match"), 400
            now = int(time.time())
            claims = {
                "iss": self.issuer,
                "aud": CLIENT_ID,
                "iat": now,
                "exp": now + 300,
                "nonce": grant.get("nonce"),
                **grant["person"],
                **self.tamper,
            }
            key = self.other_key if self.foreign_key else self.key
            id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)
            return jsonify(access_token="at-" + secrets.token_hex(8), token_type="Bearer", id_token=id_token)

        @app.errorhandler(KeyError)
        def missing(_: Any) -> Any:
            abort(400)

        return app
