package protocol

// AWSDomains are the DNS suffixes of AWS's partitions under which the SSM
// API and the message gateway are served (§1.1, §2.4): commercial and
// GovCloud, China (both names), the European Sovereign Cloud, the
// dual-stack names, and the ISO partitions. A StreamUrl host, an endpoint
// override and the hint texts are judged against this one list.
var AWSDomains = []string{
	"amazonaws.com",
	"amazonaws.com.cn",
	"amazonwebservices.com.cn",
	"amazonaws.eu",
	"api.aws",
	"c2s.ic.gov",
	"sc2s.sgov.gov",
	"cloud.adc-e.uk",
	"csp.hci.ic.gov",
}
