"""Bucket default encryption handlers (Get/Put/DeleteBucketEncryption); what seals and opens
objects is ``encryption.py``."""

from __future__ import annotations

from store.gateway.http import Response
from store.gateway.s3 import messages as m
from store.gateway.s3.call import Call
from store.gateway.s3.encryption import SETTING, parse_configuration, render_configuration
from store.gateway.s3.handlers import HandlerGroup
from store.s3.errors import S3Error

OPERATIONS: dict[str, str] = {
    "GetBucketEncryption": "get_configuration",
    "PutBucketEncryption": "put_configuration",
    "DeleteBucketEncryption": "delete_configuration",
}


class EncryptionHandlers(HandlerGroup):
    OPERATIONS = OPERATIONS

    async def get_configuration(self, call: Call) -> Response:
        bucket = await self.authz.bucket(call)
        config = bucket.settings.get(SETTING)
        if not config:
            raise S3Error(
                "ServerSideEncryptionConfigurationNotFoundError",
                404,
                "the server side encryption configuration was not found",
            )
        return m.xml(200, render_configuration(config))

    async def put_configuration(self, call: Call) -> Response:
        bucket = await self.authz.bucket(call)
        config = parse_configuration(await self.read_document(call))
        await self.put_setting(bucket.name, SETTING, config)
        return Response(200)

    async def delete_configuration(self, call: Call) -> Response:
        return await self.drop_setting(call, SETTING)
