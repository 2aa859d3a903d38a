from canary import Canary

canary = Canary("YOUR_API_KEY")

call = canary.voice.call(
    to="+15551234567",
    from_="+15559876543",
    tts={
        "text": "Hello from Canary!",
        "voice": "en-US-Neural2-F"
    },
    record=True
)

print(f"Call initiated: {call.id}")
