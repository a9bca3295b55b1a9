package sensor

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Collector returns a prometheus.Collector exposing the sensor's counters,
// read from the kernel at scrape time:
//
//	palisade_sensor_ringbuf_drops_total
//	palisade_sensor_skb_drops_total{direction="egress"|"ingress"}
//	palisade_sensor_connect_denied_total
//	palisade_sensor_kills_total
//	palisade_sensor_events_decoded_total
//	palisade_sensor_decode_errors_total
func (s *Sensor) Collector() prometheus.Collector { return collector{s} }

type collector struct{ s *Sensor }

var (
	descDrops    = prometheus.NewDesc("palisade_sensor_ringbuf_drops_total", "Events the kernel could not queue in the ring buffer.", nil, nil)
	descSKB      = prometheus.NewDesc("palisade_sensor_skb_drops_total", "Packets dropped by quarantine.", []string{"direction"}, nil)
	descDenied   = prometheus.NewDesc("palisade_sensor_connect_denied_total", "connect/sendmsg calls refused.", nil, nil)
	descKills    = prometheus.NewDesc("palisade_sensor_kills_total", "Processes killed in the kernel.", nil, nil)
	descDecoded  = prometheus.NewDesc("palisade_sensor_events_decoded_total", "Ring-buffer records decoded.", nil, nil)
	descDecodeEr = prometheus.NewDesc("palisade_sensor_decode_errors_total", "Ring-buffer records that failed to decode.", nil, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDrops, descSKB, descDenied, descKills, descDecoded, descDecodeEr} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.s.Stats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descDrops, err)
		return
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(descDrops, st.RingbufDrops)
	counter(descSKB, st.SKBEgressDrop, "egress")
	counter(descSKB, st.SKBIngressDrop, "ingress")
	counter(descDenied, st.ConnectDenied)
	counter(descKills, st.Kills)
	counter(descDecoded, st.Decoded)
	counter(descDecodeEr, st.DecodeErrors)
}
