"""HMAC with a KMS key (KeySpec HMAC_256, KeyUsage GENERATE_VERIFY_MAC): how break-glass grants are signed and checked.

The key never leaves KMS. GenerateMac returns the MAC as a blob (boto3: bytes); VerifyMac answers MacValid=true or
fails with KMSInvalidMacException when the MAC does not match ("VerifyMac", AWS KMS API Reference). Both accept a
message of at most 4,096 bytes.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from botocore.exceptions import ClientError

from release_train.adapters.aws import error_code
from release_train.domain.break_glass import MAC_ALGORITHM

MAX_MESSAGE = 4096


class KmsMac:
    def __init__(self, client: Any, key_id: str) -> None:
        self._c, self._key = client, key_id

    def sign(self, message: bytes) -> str:
        if len(message) > MAX_MESSAGE:
            raise ValueError(f"message of {len(message)} bytes: KMS MACs at most {MAX_MESSAGE}")
        mac = self._c.generate_mac(Message=message, KeyId=self._key, MacAlgorithm=MAC_ALGORITHM)["Mac"]
        return base64.b64encode(mac).decode()

    def verify(self, message: bytes, mac: str) -> bool:
        if len(message) > MAX_MESSAGE:
            return False
        try:
            raw = base64.b64decode(mac, validate=True)
        except binascii.Error:
            return False
        try:
            answer = self._c.verify_mac(Message=message, KeyId=self._key, MacAlgorithm=MAC_ALGORITHM, Mac=raw)
        except ClientError as exc:
            if error_code(exc) == "KMSInvalidMacException":
                return False
            raise
        return bool(answer.get("MacValid"))
