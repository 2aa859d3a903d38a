import pytest

from services.telephony.sip.mapping import map_final_response
from services.telephony.sip.sdp import PCMA, PCMU, SdpError, build_offer, parse_sdp


def test_offer_contents():
    sdp = build_offer("10.1.2.3", 40000, session_id=7)
    assert "m=audio 40000 RTP/AVP 0 8 101" in sdp
    assert "a=rtpmap:101 telephone-event/8000" in sdp and "c=IN IP4 10.1.2.3" in sdp
    ans = parse_sdp(sdp)
    assert (ans.ip, ans.port, ans.codec, ans.dtmf_pt) == ("10.1.2.3", 40000, PCMU, 101)


def test_answer_pcma_media_level_connection():
    sdp = ("v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nc=IN IP4 1.1.1.1\r\nt=0 0\r\n"
           "m=audio 5004 RTP/AVP 8 96\r\nc=IN IP4 2.2.2.2\r\na=rtpmap:8 PCMA/8000\r\n"
           "a=rtpmap:96 telephone-event/8000\r\na=ptime:30\r\n")
    ans = parse_sdp(sdp)
    assert (ans.ip, ans.port, ans.codec, ans.codec_name, ans.dtmf_pt, ans.ptime) == ("2.2.2.2", 5004, PCMA, "PCMA", 96, 30)


def test_no_common_codec():
    ans = parse_sdp("v=0\r\nc=IN IP4 1.1.1.1\r\nm=audio 5 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n")
    with pytest.raises(SdpError):
        ans.codec
    with pytest.raises(SdpError):
        parse_sdp("garbage")


@pytest.mark.parametrize(
    "code,canceled,status",
    [(486, None, "busy"), (600, None, "busy"), (408, None, "no-answer"), (480, None, "no-answer"),
     (487, "timeout", "no-answer"), (487, "hangup", "canceled"), (487, None, "failed"),
     (404, None, "failed"), (503, None, "failed"), (603, None, "failed"), (302, None, "failed")],
)
def test_mapping(code, canceled, status):
    e = map_final_response(code, "Reason", canceled_by=canceled)
    assert e.status == status and e.sip_code == code
