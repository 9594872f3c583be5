#!/usr/bin/env python3
"""Writes the operator's image as an OCI image archive, without a container engine.

The image is the Dockerfile's: one layer holding /patchkeeper (a static binary, mode 0755)
and /etc/ssl/certs/ca-certificates.crt, run as 65532:65532 with ENTRYPOINT ["/patchkeeper"]
and CMD ["run"]. The archive is an OCI image layout (oci-layout, index.json, blobs/) in a
tar, as `skopeo copy oci-archive:...`, `podman load` and `docker load` take it.

Only the Python standard library is used. The output is reproducible: file times come from
SOURCE_DATE_EPOCH (default 0), owners are root, entries are sorted.
"""

import argparse
import datetime
import gzip
import hashlib
import io
import json
import os
import struct
import sys
import tarfile

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

USER = "65532:65532"
ENTRYPOINT = ["/patchkeeper"]
CMD = ["run"]
CA_PATH = "etc/ssl/certs/ca-certificates.crt"

PT_INTERP = 3


def fail(message):
    print(f"oci-image: {message}", file=sys.stderr)
    sys.exit(1)


def interpreter_of(binary):
    """The ELF program interpreter a binary asks for; None for a static binary."""
    with open(binary, "rb") as file:
        elf = file.read()
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        fail(f"{binary} is not a 64-bit ELF file")
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for index in range(phnum):
        offset = phoff + index * phentsize
        kind, = struct.unpack_from("<I", elf, offset)
        if kind == PT_INTERP:
            start, = struct.unpack_from("<Q", elf, offset + 8)
            size, = struct.unpack_from("<Q", elf, offset + 32)
            return elf[start : start + size].rstrip(b"\0").decode()
    return None


def add_file(tar, name, data, mode, mtime):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data))


def add_directory(tar, name, mtime):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    tar.addfile(info)


def layer(binary, certificates, mtime):
    """The root file system as an uncompressed tar."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory in ["etc/", "etc/ssl/", "etc/ssl/certs/"]:
            add_directory(tar, directory, mtime)
        with open(certificates, "rb") as file:
            add_file(tar, CA_PATH, file.read(), 0o644, mtime)
        with open(binary, "rb") as file:
            add_file(tar, "patchkeeper", file.read(), 0o755, mtime)
    return buffer.getvalue()


def gzipped(data, mtime):
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=mtime) as file:
        file.write(data)
    return buffer.getvalue()


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type, data, **extra):
    return {"mediaType": media_type, "digest": digest(data), "size": len(data), **extra}


def canonical(document):
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def image(binary, certificates, version, created, mtime):
    """The blobs of the image, and its index.json."""
    root = layer(binary, certificates, mtime)
    compressed = gzipped(root, mtime)
    labels = {
        "org.opencontainers.image.title": "patchkeeper",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.licenses": "Apache-2.0",
    }
    config = canonical({
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {
            "User": USER,
            "Entrypoint": ENTRYPOINT,
            "Cmd": CMD,
            "Env": [f"SSL_CERT_FILE=/{CA_PATH}"],
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [digest(root)]},
        "history": [{"created": created, "created_by": "scripts/build-image.sh"}],
    })
    manifest = canonical({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": descriptor(MEDIA_CONFIG, config),
        "layers": [descriptor(MEDIA_LAYER, compressed)],
        "annotations": labels,
    })
    index = canonical({
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [descriptor(
            MEDIA_MANIFEST,
            manifest,
            platform={"architecture": "amd64", "os": "linux"},
            annotations={
                "org.opencontainers.image.ref.name": version,
                "io.containerd.image.name": f"patchkeeper:{version}",
            },
        )],
    })
    return [config, compressed, manifest], index


def write_archive(output, blobs, index, mtime):
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    partial = output + ".partial"
    with tarfile.open(partial, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add_file(tar, "oci-layout", canonical({"imageLayoutVersion": "1.0.0"}), 0o644, mtime)
        add_file(tar, "index.json", index, 0o644, mtime)
        for directory in ["blobs/", "blobs/sha256/"]:
            add_directory(tar, directory, mtime)
        for blob in sorted(blobs, key=digest):
            name = "blobs/sha256/" + digest(blob).removeprefix("sha256:")
            add_file(tar, name, blob, 0o644, mtime)
    os.replace(partial, output)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True, help="the static patchkeeper binary")
    parser.add_argument("--ca-certificates", default="/etc/ssl/certs/ca-certificates.crt")
    parser.add_argument("--version", required=True, help="the image's version and tag")
    parser.add_argument("--output", required=True, help="where to write the archive")
    args = parser.parse_args()

    interpreter = interpreter_of(args.binary)
    if interpreter is not None:
        fail(f"{args.binary} is dynamically linked (it asks for {interpreter}); "
             "the image has no C library: build it with -C target-feature=+crt-static")
    if not os.path.isfile(args.ca_certificates):
        fail(f"no CA bundle at {args.ca_certificates}: install Debian's ca-certificates")

    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    created = datetime.datetime.fromtimestamp(mtime, datetime.timezone.utc)
    created = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    blobs, index = image(args.binary, args.ca_certificates, args.version, created, mtime)
    write_archive(args.output, blobs, index, mtime)
    manifest = json.loads(index)["manifests"][0]["digest"]
    print(f"{args.output}: patchkeeper:{args.version}, manifest {manifest}")


if __name__ == "__main__":
    main()
