# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
.PHONY: demo test build setup clean

demo:
	scripts/ws.sh demo

test:
	scripts/ws.sh test

build:
	scripts/ws.sh build

setup:
	scripts/ws.sh setup

clean:
	rm -rf build install log build-jazzy install-jazzy
