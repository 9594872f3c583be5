# The two entry points a newcomer needs; see the README.
.PHONY: test
test:
	scripts/test.sh
