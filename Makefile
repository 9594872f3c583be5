# The two entry points a newcomer needs; see the README.
.PHONY: test
test:
	scripts/test.sh

# A fleet of VMs patched on a local control plane, start to end; see scripts/demo.sh.
# `make demo DEMO_FLAGS=--keep` leaves it running for kubectl.
.PHONY: demo
demo:
	scripts/demo.sh $(DEMO_FLAGS)
