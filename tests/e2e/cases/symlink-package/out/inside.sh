# nixpkgs: "check if symlinks are properly bind-mounted"
expect_content @LINK@ "got me"
# the symlink's target is in the closure (the symlink refers to it)
expect_content @TARGET@ "got me"
