import Canary from '@canary/node';

const canary = new Canary('YOUR_API_KEY');

const call = await canary.voice.call({
  to: '+15551234567',
  from: '+15559876543',
  tts: {
    text: 'Hello from Canary!',
    voice: 'en-US-Neural2-F'
  },
  record: true
});

console.log('Call initiated:', call.id);
