"""A cluster on one machine: etcd members, chunk servers and a gateway as real processes
(``store lab``), and what the tests build on."""
