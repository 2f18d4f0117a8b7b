// An Express app as Moesif's README sets it up, pointed at Sluice: baseUri and a Sluice key, and a
// short batch time so the test need not wait. Every error the middleware reports goes to stderr.
const express = require('express');
const moesif = require('moesif-nodejs');

const app = express();
app.use(
  moesif({
    applicationId: process.env.MOESIF_APPLICATION_ID,
    baseUri: process.env.MOESIF_BASE_URI,
    batchSize: 100,
    batchMaxTime: 600,
    callback: (error) => {
      if (error) console.error('moesif-nodejs error: ' + JSON.stringify(error));
    },
  })
);
app.use(express.json());
app.get('/items/:id', (req, res) => res.status(200).json({ id: Number(req.params.id) }));
app.post('/items', (req, res) => res.status(201).json({ id: 2, ...req.body }));
app.put('/items/:id', (req, res) => res.status(404).json({ error: 'no item ' + req.params.id }));
app.delete('/items/:id', (req, res) => res.status(500).json({ error: 'boom' }));

app.listen(Number(process.env.PORT), '127.0.0.1', () => console.log('listening'));
