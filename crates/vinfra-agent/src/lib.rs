//! Host agent library: runs VMs as QEMU processes over QMP, re-adopts them, reports usage, talks to the console.
