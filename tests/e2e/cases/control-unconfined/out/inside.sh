# expected to FAIL on every line: this unit is not confined
expect_absent /etc/passwd
expect_absent /usr/bin
expect_absent /var/lib/dpkg
