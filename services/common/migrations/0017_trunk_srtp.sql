-- SRTP with SDES keys per trunk (services/telephony/sip/srtp.py, docs/architecture.md "SRTP"):
-- off (plain RTP), optional (offer plain RTP, answer an SRTP offer with SRTP), required (offer
-- RTP/SAVP only, refuse plain RTP). Keys cross in the SDP, so outside development the API
-- allows it on tls trunks only (services/lib/trunks.py).
ALTER TABLE sip_trunks
    ADD COLUMN srtp text NOT NULL DEFAULT 'off' CHECK (srtp IN ('off', 'optional', 'required'));
