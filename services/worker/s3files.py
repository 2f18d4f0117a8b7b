"""Writing a file to S3 as a stream: parts go up as they fill, so memory stays at one part."""
import hashlib
from dataclasses import dataclass

MIN_PART_BYTES = 5 * 1024 * 1024  # S3's floor for every part but the last


@dataclass
class UploadedFile:
    key: str
    size_bytes: int
    row_count: int
    sha256: str


class S3File:
    """A file-like sink whose bytes go to `key`; nothing is visible under the key until close().

    Small files (under one part) go up with a single PUT; larger ones as a multipart upload whose
    completion is what makes the object appear.
    """

    def __init__(self, s3, bucket: str, key: str, part_bytes: int, content_type: str):
        self.s3, self.bucket, self.key = s3, bucket, key
        self.part_bytes = max(part_bytes, MIN_PART_BYTES)
        self.content_type = content_type
        self.size = 0
        self.rows = 0
        self._buf = bytearray()
        self._sha = hashlib.sha256()
        self._upload_id = None
        self._parts: list[dict] = []

    def write(self, data: bytes) -> None:
        self._buf += data
        self.size += len(data)
        if len(self._buf) >= self.part_bytes:
            self._upload_part()

    def _upload_part(self) -> None:
        if self._upload_id is None:
            self._upload_id = self.s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType=self.content_type)["UploadId"]
        body = bytes(self._buf)
        self._buf = bytearray()
        self._sha.update(body)
        number = len(self._parts) + 1
        etag = self.s3.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id,
                                   PartNumber=number, Body=body)["ETag"]
        self._parts.append({"ETag": etag, "PartNumber": number})

    def close(self) -> UploadedFile:
        if self._upload_id is None:
            body = bytes(self._buf)
            self._sha.update(body)
            self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=body, ContentType=self.content_type)
        else:
            if self._buf:
                self._upload_part()
            self.s3.complete_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id,
                                              MultipartUpload={"Parts": self._parts})
        return UploadedFile(self.key, self.size, self.rows, self._sha.hexdigest())

    def abort(self) -> None:
        if self._upload_id is not None:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)
            self._upload_id = None


def abort_unfinished(s3, bucket: str, prefix: str) -> None:
    """Abort multipart uploads a killed attempt left under prefix (they hold storage, not data)."""
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
        for upload in page.get("Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])


def delete_prefix(s3, bucket: str, prefix: str) -> int:
    """Delete every object under prefix; return how many."""
    deleted = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            deleted += len(keys)
    return deleted
