# The host is not visible: the unit is confined.
expect_absent /var/lib/dpkg
expect_absent /usr/bin
