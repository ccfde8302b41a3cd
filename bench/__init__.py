"""The authsvc benchmark: `make bench`, described in bench/README.md."""
