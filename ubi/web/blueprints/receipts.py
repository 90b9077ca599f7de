"""The public keys that verify UBI's evidence receipts (SPEC §6, §13; no authentication)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from ubi.services import receipts
from ubi.web.blueprints.common import settings

blp = Blueprint("receipts", __name__, description="Evidence receipts: verification keys")


class ReceiptKeySchema(ma.Schema):
    kid = ma.fields.String(required=True, metadata={
        "description": "first 16 hex chars of SHA-256 of the raw public key; the `{kid}` of "
                       "a receipt's `sig-ed25519:{kid}:{signature}`"})
    algorithm = ma.fields.String(required=True, metadata={"enum": ["Ed25519"]})
    public_key_pem = ma.fields.String(required=True, metadata={
        "description": "SubjectPublicKeyInfo PEM"})
    public_key_base64 = ma.fields.String(required=True, metadata={
        "description": "the raw 32-byte key, base64"})
    status = ma.fields.String(required=True, metadata={
        "enum": ["current", "retired"],
        "description": "`retired`: signs nothing new; listed while its receipts live"})


class ReceiptKeySetSchema(ma.Schema):
    current_kid = ma.fields.String(required=True, metadata={
        "description": "the key that signs new receipts"})
    keys = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Nested(ReceiptKeySchema),
                          required=True, metadata={
                              "description": "every key whose receipts may still be "
                                             "verified, by kid (a retired key stays listed "
                                             "until its receipts expire)"})


@blp.route("/receipts/public-key")
class ReceiptPublicKey(MethodView):
    @blp.response(200, ReceiptKeySetSchema)
    def get(self) -> dict[str, Any]:
        """The Ed25519 public keys that verify UBI's receipts, by kid: sort the receipt's
        keys recursively without `signature`, serialise with separators `,` and `:` (UTF-8,
        no ASCII escaping), and verify the signature's bytes with the key its kid names."""
        return receipts.key_set(settings())
