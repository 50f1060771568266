#!/usr/bin/perl
# A DNS server for the e2e suite (busybox-static here has no dnsd), with
# perl-base alone: answers A queries for the names of its table with their
# address, other types of a known name with no answer, unknown names with
# NXDOMAIN. Usage: ncg-dnsd.pl ADDRESS TABLE (lines "NAME ADDRESS").
use strict;
use warnings;
use IO::Socket::INET;

my ($address, $table) = @ARGV;
my %a;
open(my $fh, '<', $table) or die "$table: $!";
while (<$fh>) {
    my ($name, $ip) = split;
    $a{lc $name} = $ip if defined $ip;
}
close $fh;
my $socket = IO::Socket::INET->new(LocalAddr => $address, LocalPort => 53, Proto => 'udp')
    or die "cannot listen on $address:53: $!";
$| = 1;
print "listening on $address:53\n";
while (1) {
    my $peer = $socket->recv(my $query, 512);
    next unless defined $peer && length($query) >= 12;
    my ($id) = unpack('n', $query);
    my ($pos, @labels) = (12);
    while ($pos < length $query) {
        my $length = ord substr($query, $pos, 1);
        $pos++;
        last if $length == 0;
        push @labels, substr($query, $pos, $length);
        $pos += $length;
    }
    next if $pos + 4 > length $query;
    my ($type) = unpack('n', substr($query, $pos, 2));
    my $question = substr($query, 12, $pos + 4 - 12);
    my $name = lc join('.', @labels);
    my $ip = $a{$name};
    my ($rcode, $answer, $count) = (0, '', 0);
    if (!defined $ip) {
        $rcode = 3;
    } elsif ($type == 1) {
        $answer = pack('n n n N n', 0xc00c, 1, 1, 60, 4) . pack('C4', split /\./, $ip);
        $count = 1;
    }
    print "$name type $type: ", ($count ? $ip : "rcode $rcode, no answer"), "\n";
    $socket->send(pack('n n n n n n', $id, 0x8180 | $rcode, 1, $count, 0, 0) . $question . $answer, 0, $peer);
}
