"""Writing a file to S3 as a stream: parts go up as they fill, so memory stays at two parts."""

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
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
    completion is what makes the object appear. One part uploads in a thread while the next fills,
    so reading rows and uploading overlap; memory holds at most the part in flight and the next.
    """

    def __init__(self, s3, bucket: str, key: str, part_bytes: int, content_type: str, header: bytes = b""):
        self.s3, self.bucket, self.key = s3, bucket, key
        self.part_bytes = max(part_bytes, MIN_PART_BYTES)
        self.content_type = content_type
        self.rows = 0
        self._sent = 0  # bytes handed to uploaded parts
        self._buf = bytearray(header)
        self._sha = hashlib.sha256()
        self._upload_id = None
        self._parts: list[dict] = []
        self._uploader: ThreadPoolExecutor | None = None
        self._in_flight: Future | None = None

    @property
    def size(self) -> int:
        return self._sent + len(self._buf)

    def write(self, row: bytes) -> None:
        """Add one row. Called once per row of a COPY: kept to the bare minimum."""
        buf = self._buf
        buf += row
        self.rows += 1
        if len(buf) >= self.part_bytes:
            self._upload_part()

    def _upload_part(self) -> None:
        if self._upload_id is None:
            self._upload_id = self.s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType=self.content_type
            )["UploadId"]
            self._uploader = ThreadPoolExecutor(1, thread_name_prefix="sluice-upload")
        body, self._buf = self._buf, bytearray()  # handed over whole, not copied
        self._sent += len(body)
        self._sha.update(body)
        self._wait()
        number = len(self._parts) + 1
        self._in_flight = self._uploader.submit(
            self.s3.upload_part,
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=body,
        )
        self._parts.append({"ETag": None, "PartNumber": number})

    def _wait(self) -> None:
        """Let the part in flight finish (raising its error, if any) and record its ETag."""
        if self._in_flight is not None:
            future, self._in_flight = self._in_flight, None
            self._parts[-1]["ETag"] = future.result()["ETag"]

    def close(self) -> UploadedFile:
        if self._upload_id is None:
            body = bytes(self._buf)
            self._sha.update(body)
            self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=body, ContentType=self.content_type)
        else:
            if self._buf:
                self._upload_part()
            self._wait()
            self._uploader.shutdown()
            self.s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        return UploadedFile(self.key, self.size, self.rows, self._sha.hexdigest())

    def abort(self) -> None:
        if self._uploader is not None:
            self._uploader.shutdown(wait=True)  # the part in flight, if any, must not land after the abort
        if self._upload_id is not None:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)
            self._upload_id = None


def abort_unfinished(s3, bucket: str, prefix: str) -> None:
    """Abort multipart uploads a killed attempt left under prefix (they hold storage, not data)."""
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
        for upload in page.get("Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])


def discard(s3, bucket: str, prefix: str) -> int:
    """Abort the unfinished uploads under prefix and delete every object; return how many objects."""
    abort_unfinished(s3, bucket, prefix)
    return delete_prefix(s3, bucket, prefix)


def delete_prefix(s3, bucket: str, prefix: str) -> int:
    """Delete every object under prefix; return how many."""
    deleted = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            deleted += len(keys)
    return deleted
