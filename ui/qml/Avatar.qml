// A rounded-square picture, or the first letter of the name on a colour of its own when
// there is no picture (yet).
import QtQuick 2.15
import "."

Item {
    id: root
    property string source: ""
    property string label: ""
    property int size: Theme.avatar
    implicitWidth: size
    implicitHeight: size

    readonly property var palette: ["#F4A261", "#7FB3D5", "#90BE6D", "#C39BD3", "#F28482", "#84A59D", "#E9C46A"]

    function colourFor(text) {
        var h = 0
        for (var i = 0; i < text.length; ++i)
            h = (h * 31 + text.charCodeAt(i)) % 9973
        return palette[h % palette.length]
    }

    Rectangle {
        anchors.fill: parent
        radius: width * 0.38
        color: root.colourFor(root.label)
        visible: picture.status !== Image.Ready
        Text {
            anchors.centerIn: parent
            text: root.label.length ? root.label.charAt(0).toUpperCase() : "?"
            color: "white"
            font.pixelSize: root.size * 0.45
            font.bold: true
        }
    }
    Image {
        id: picture
        anchors.fill: parent
        source: root.source
        sourceSize.width: root.size * 2
        sourceSize.height: root.size * 2
        asynchronous: true
        smooth: true
        visible: status === Image.Ready
    }
}
