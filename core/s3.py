"""Object storage on S3 or an S3-compatible service (WARDROBE_STORAGE=s3://bucket)."""
from __future__ import annotations

from dataclasses import dataclass

from core.objects import ObjectNotFound, Storage, StorageError, StoredObject

MIN_PART_SIZE = 5 * 1024 * 1024  # S3's least part size, but for the last part
MAX_PARTS = 10_000  # S3's most parts in one multipart upload
READ_BUDGET = 64 * 1024 * 1024  # bytes open_reader may fetch in all (a zip's end and central directory)


@dataclass(frozen=True)
class Part:
    """One part of a multipart upload that S3 holds."""

    number: int
    size: int
    etag: str


class S3Storage(Storage):
    multipart = True

    def __init__(self, bucket: str, endpoint_url: str | None = None, region: str = "us-east-1", create_bucket: bool = False,
                 max_attempts: int = 5):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.region = region
        self.endpoint_url = endpoint_url or None
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url or None,
            region_name=region,
            config=Config(retries={"max_attempts": max_attempts, "mode": "standard"}, connect_timeout=5, read_timeout=60),
        )
        self._presigners: dict[str | None, object] = {}
        if create_bucket:
            self._ensure_bucket()

    def _ensure_bucket(self):
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            try:
                self.client.create_bucket(Bucket=self.bucket)
            except ClientError as e:  # created meanwhile by another process
                if e.response.get("Error", {}).get("Code") not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise

    def _wrap(self, e: Exception, key: str) -> StorageError:
        from botocore.exceptions import ClientError

        if isinstance(e, ClientError) and e.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound",
                                                                                        "NoSuchUpload"}:
            return ObjectNotFound(key)
        return StorageError(f"{type(e).__name__}: {e}")

    def put_file(self, key, fileobj, content_type="application/octet-stream"):
        try:
            self.client.upload_fileobj(fileobj, self.bucket, key, ExtraArgs={"ContentType": content_type})
        except Exception as e:  # noqa: BLE001
            raise self._wrap(e, key) from e

    def put_bytes(self, key, data, content_type="application/octet-stream"):
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        except Exception as e:  # noqa: BLE001
            raise self._wrap(e, key) from e

    def get_bytes(self, key):
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as e:  # noqa: BLE001
            raise self._wrap(e, key) from e

    def download_to(self, key, path):
        try:
            self.client.download_file(self.bucket, key, str(path))
        except Exception as e:  # noqa: BLE001
            raise self._wrap(e, key) from e

    def iter_chunks(self, key, chunk_size=1024 * 1024):
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except Exception as e:  # noqa: BLE001
            raise self._wrap(e, key) from e
        return body.iter_chunks(chunk_size)

    def size(self, key):
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except Exception as e:  # noqa: BLE001
            raise self._wrap(e, key) from e

    def open_reader(self, key, budget=READ_BUDGET):
        from core.ranged import open_ranged

        def fetch(start: int, end: int) -> bytes:
            try:
                return self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end}")["Body"].read()
            except Exception as e:  # noqa: BLE001
                raise self._wrap(e, key) from e

        return open_ranged(fetch, self.size(key), budget)

    # --- multipart uploads: the client sends the parts straight to the bucket -------------------------------------

    def create_multipart(self, key: str, content_type: str = "application/octet-stream") -> str:
        """Begin a multipart upload at `key`; its UploadId."""
        try:
            return self.client.create_multipart_upload(Bucket=self.bucket, Key=key, ContentType=content_type)["UploadId"]
        except Exception as e:  # noqa: BLE001
            raise self._wrap(e, key) from e

    def _presigner(self, endpoint_url: str | None):
        """A client that signs for the endpoint clients reach (it is in the signature), SigV4 so the
        part's length is signed too. Signing is local: no request is made."""
        endpoint_url = endpoint_url or self.endpoint_url
        if endpoint_url not in self._presigners:
            import boto3
            from botocore.config import Config

            self._presigners[endpoint_url] = boto3.client("s3", endpoint_url=endpoint_url, region_name=self.region,
                                                          config=Config(signature_version="s3v4"))
        return self._presigners[endpoint_url]

    def presign_part(self, key: str, upload_id: str, number: int, size: int, expires: int,
                     endpoint_url: str | None = None) -> str:
        """A URL to PUT part `number` of exactly `size` bytes to, valid `expires` seconds."""
        return self._presigner(endpoint_url).generate_presigned_url(
            "upload_part", ExpiresIn=expires,
            Params={"Bucket": self.bucket, "Key": key, "UploadId": upload_id, "PartNumber": number, "ContentLength": size})

    def list_parts(self, key: str, upload_id: str) -> list[Part]:
        """The parts S3 holds, by number (ObjectNotFound: no such upload, completed or aborted)."""
        try:
            out = []
            for page in self.client.get_paginator("list_parts").paginate(Bucket=self.bucket, Key=key, UploadId=upload_id):
                out += [Part(int(p["PartNumber"]), int(p["Size"]), p["ETag"]) for p in page.get("Parts", [])]
            return sorted(out, key=lambda p: p.number)
        except Exception as e:  # noqa: BLE001
            raise self._wrap(e, key) from e

    def complete_multipart(self, key: str, upload_id: str, parts: list[Part]) -> None:
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": p.number, "ETag": p.etag} for p in parts]})
        except Exception as e:  # noqa: BLE001
            raise self._wrap(e, key) from e

    def abort_multipart(self, key: str, upload_id: str) -> None:
        """Drop the upload's parts; one already gone is fine."""
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except Exception as e:  # noqa: BLE001
            err = self._wrap(e, key)
            if not isinstance(err, ObjectNotFound):
                raise err from e

    def delete(self, key):
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as e:  # noqa: BLE001
            raise self._wrap(e, key) from e

    def delete_prefix(self, prefix):
        n = 0
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            objs = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objs:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objs})
                n += len(objs)
        return n

    def delete_many(self, keys_):
        for i in range(0, len(keys_), 1000):
            try:
                res = self.client.delete_objects(Bucket=self.bucket,
                                                 Delete={"Objects": [{"Key": k} for k in keys_[i:i + 1000]], "Quiet": True})
            except Exception as e:  # noqa: BLE001
                raise self._wrap(e, keys_[i]) from e
            if res.get("Errors"):
                raise StorageError(f"{len(res['Errors'])} objects not deleted: {res['Errors'][0]}")

    def list(self, prefix):
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for o in page.get("Contents", []):
                    yield StoredObject(o["Key"], int(o["Size"]), o["LastModified"].timestamp())
        except Exception as e:  # noqa: BLE001
            raise self._wrap(e, prefix) from e

    def stale_partials(self, older_than):
        try:
            out = []
            for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket):
                for u in page.get("Uploads", []):
                    if u["Initiated"].timestamp() < older_than:
                        out.append(f"{u['Key']}?uploadId={u['UploadId']}")
            return out
        except Exception as e:  # noqa: BLE001
            raise self._wrap(e, "") from e

    def drop_partial(self, name):
        key, _, upload_id = name.rpartition("?uploadId=")
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except Exception as e:  # noqa: BLE001
            err = self._wrap(e, key)
            if not isinstance(err, ObjectNotFound) and "NoSuchUpload" not in str(e):
                raise err from e

    def ping(self):
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as e:  # noqa: BLE001
            raise StorageError(f"bucket {self.bucket!r} unreachable: {e}") from e
