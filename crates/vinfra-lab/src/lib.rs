//! The lab: a whole vinfra cluster on one machine (network namespaces, guest image, processes).
