#!/bin/sh
# udhcpc event script for test guests: apply the lease with ip(8).
case "$1" in
  deconfig) ip addr flush dev "$interface" ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    if [ -n "$router" ]; then ip route replace default via "${router%% *}" dev "$interface"; fi
    echo "LEASE $ip"
    ;;
esac
exit 0
