//! Pure placement: picks a host for a VM from capacity and allocation ratios. No I/O.
