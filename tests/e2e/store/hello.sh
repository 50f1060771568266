#!@BB@/bin/sh
# ncg-hello: the "other program" bound as /bin/sh (stands in for GNU hello
# in nixpkgs' test): "-g TEXT" prints TEXT.
if [ "${1-}" = -g ]; then
  printf '%s\n' "$2"
else
  printf 'Hello, world!\n'
fi
