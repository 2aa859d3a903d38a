-- A trunk without a port has its servers located by DNS at each call (RFC 3263: NAPTR, SRV,
-- then the host's address with the transport's default port; services/telephony/sip/locate.py).
-- Trunks stored before keep the port they were given.
ALTER TABLE sip_trunks ALTER COLUMN port DROP NOT NULL, ALTER COLUMN port DROP DEFAULT;
