"""Image conversion: turn an existing OCI image into a shielded image.

The converter is split in layers that can each be used on their own:

- :mod:`sanctum.converter.oci` reads and writes OCI images (registry, OCI image layout,
  docker-archive tarball) as streams with bounded memory, verifying every digest on read.
- :mod:`sanctum.converter.analysis` computes the final filesystem of an image (whiteouts and
  opaque directories applied, SHA-256 of every regular file) without unpacking it to disk.
- The enclave manifest, SIGSTRUCT, Gramine manifest and the conversion pipeline build on these.

Boundaries: this package never runs containers and never needs a Docker daemon; it talks to
registries over HTTP(S) and to files on disk only through the image stores in
:mod:`sanctum.converter.oci`.
"""
